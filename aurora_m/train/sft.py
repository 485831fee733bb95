"""Safety SFT with TRL: Instruction/Response prompts, loss on the responses only."""

from __future__ import annotations

from pathlib import Path

from ..args import ModelArguments, SFTDataArguments
from ..data.build import dataset_dir_for
from ..tokenizer import load_tokenizer
from .common import train_and_save
from .model import load_model, parameter_count


def train_sft(model_args: ModelArguments, data_args: SFTDataArguments, sft_config,
              config_file: str | Path = "<stage config>", title: str = "safety SFT") -> Path:
    from datasets import load_from_disk
    from trl import SFTTrainer

    dataset_dir = dataset_dir_for(data_args, sft_config)
    if not (dataset_dir / "train").is_dir():
        from ..data.build import build_sft_dataset

        with sft_config.main_process_first(desc="build dataset"):
            if not (dataset_dir / "train").is_dir():
                build_sft_dataset(data_args, dataset_dir, config_file)
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, tokenizer)
    # prompt/completion rows: TRL masks the prompt, so the loss is on the responses only
    train_ds = load_from_disk(str(dataset_dir / "train")).select_columns(["prompt", "completion"])
    print(f"[train] {title}: {parameter_count(model):,} parameters, {len(train_ds)} pairs")
    trainer = SFTTrainer(model=model, args=sft_config, train_dataset=train_ds, processing_class=tokenizer)
    return train_and_save(trainer, title)
