"""Safety SFT with TRL: Instruction/Response prompts, loss on the responses only."""

from __future__ import annotations

import logging
from pathlib import Path

from ..args import ModelArguments, SFTDataArguments
from ..data.build import build_sft_dataset
from ..layout import DatasetDir, StageDir
from ..tokenizer import load_tokenizer
from .common import keep_token_out_of_files, train_and_save, wired_arguments
from .model import load_model, parameter_count

logger = logging.getLogger(__name__)


def train_sft(model_args: ModelArguments, data_args: SFTDataArguments, sft_config,
              config_file: str | Path = "<stage config>", title: str = "safety SFT") -> Path:
    from datasets import load_from_disk
    from trl import SFTTrainer

    dirs = StageDir(sft_config.output_dir)
    data = DatasetDir(data_args.dataset_dir) if data_args.dataset_dir else dirs.data
    if data.is_built():  # scripts reuse it as is; `aurora-m` rebuilds it when its sources or keys change
        logger.info("training on the dataset in %s", data.root)
    else:
        with sft_config.main_process_first(desc="build dataset"):
            if not data.is_built():
                build_sft_dataset(data_args, data.root, config_file)
    tokenizer = load_tokenizer(model_args, config_file)
    model = load_model(model_args, tokenizer, config_file)
    # prompt/completion rows: TRL masks the prompt, so the loss is on the responses only
    train_ds = load_from_disk(str(data.train)).select_columns(["prompt", "completion"])
    logger.info("%s: %s parameters, %d pairs", title, f"{parameter_count(model):,}", len(train_ds))
    keep_token_out_of_files(sft_config)
    trainer = SFTTrainer(model=model, args=sft_config, train_dataset=train_ds, processing_class=tokenizer)
    return train_and_save(trainer, dirs, title)


def run_train_step(ctx) -> Path:
    """The pipeline's train step of an SFT stage: continues from the input model, reads the data step's folder."""
    model_args, data_args, sft_config = ctx.parse(*wired_arguments(ctx))
    return train_sft(model_args, data_args, sft_config, ctx.config, ctx.title)
