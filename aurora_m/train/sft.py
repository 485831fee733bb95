"""SFT with TRL (safety SFT, the instruct variant): full fine-tuning or LoRA, loss on the responses only.

Rows are chats rendered by the Aurora-M chat template (``### Instruction:`` / ``### Response:``, EOS after
every reply): ``messages`` rows train with assistant-only loss (the template's generation markers),
prompt/completion rows with completion-only loss. With ``use_peft`` the adapter is saved to the stage's
``adapter/`` and merged into a standalone safetensors model in ``model/`` for evaluation and publishing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..args import ModelArguments, SFTDataArguments
from ..data.build import build_sft_dataset
from ..errors import RecipeError
from ..io import replace_dir
from ..layout import TRAINING_ARGS_PICKLE, StageDir
from ..tokenizer import load_tokenizer
from .common import keep_token_out_of_files, stage_dataset, train_and_save, wired_arguments
from .lora import lora_config, merge_adapter
from .model import load_model, parameter_count

logger = logging.getLogger(__name__)


def build_sft_trainer(
    model_args: ModelArguments,
    data_args: SFTDataArguments,
    sft_config,
    config_file: str | Path = "<stage config>",
    title: str = "SFT",
):
    """The stage's SFTTrainer on its (built) dataset: what training, and the label tests, use."""
    from datasets import load_from_disk
    from trl import SFTTrainer

    dirs = StageDir(sft_config.output_dir)
    data = stage_dataset(
        sft_config, data_args.dataset_dir, lambda folder: build_sft_dataset(data_args, folder, config_file)
    )
    tokenizer = load_tokenizer(model_args, config_file)
    model = load_model(model_args, tokenizer, config_file)
    train_ds = load_from_disk(str(data.train))
    columns = ["messages"] if "messages" in train_ds.column_names else ["prompt", "completion"]
    train_ds = train_ds.select_columns(columns)
    if columns == ["messages"] and not sft_config.assistant_only_loss:
        # chats carry instructions too: without the template's generation markers the loss would cover them
        logger.info("messages rows: assistant_only_loss on (the loss covers the replies and their EOS only)")
        sft_config.assistant_only_loss = True
    peft = lora_config(model_args, config_file, model.config.to_dict())
    targets = (
        [peft.target_modules]
        if peft and isinstance(peft.target_modules, str)
        else sorted(peft.target_modules)
        if peft
        else []
    )
    logger.info(
        "%s: %s parameters%s, %d rows",
        title,
        f"{parameter_count(model):,}",
        f", LoRA r={peft.r} on {', '.join(targets)}" if peft else "",
        len(train_ds),
    )
    keep_token_out_of_files(sft_config)
    try:
        trainer = SFTTrainer(
            model=model, args=sft_config, train_dataset=train_ds, processing_class=tokenizer, peft_config=peft
        )
    except ValueError as err:  # peft refusing the LoRA keys (no such module, a bad rank): the recipe's mistake
        if peft is None or not type(err).__module__.startswith("peft"):
            raise
        raise RecipeError(config_file, "lora_*", str(err)[:300]) from None
    return trainer, dirs


def train_sft(
    model_args: ModelArguments,
    data_args: SFTDataArguments,
    sft_config,
    config_file: str | Path = "<stage config>",
    title: str = "safety SFT",
) -> Path:
    trainer, dirs = build_sft_trainer(model_args, data_args, sft_config, config_file, title)
    after_save = None
    if model_args.use_peft:

        def after_save(folder: Path) -> None:
            _merge(folder, dirs, model_args)

    return train_and_save(trainer, dirs, title, after_save)


def _merge(folder: Path, dirs: StageDir, model_args: ModelArguments) -> None:
    """``folder`` holds the adapter: it becomes the stage's ``adapter/``, and the merged model takes its place."""
    adapter = dirs.adapter_partial
    if adapter.exists():
        shutil.rmtree(adapter)  # left by a merge that was killed
    folder.rename(adapter)  # the saved folder (ours, unfinished) becomes the adapter's; published by replace_dir
    (adapter / TRAINING_ARGS_PICKLE).unlink(missing_ok=True)
    merge_adapter(adapter, model_args.model_name_or_path, folder, model_args.dtype)
    replace_dir(adapter, dirs.adapter)


def run_train_step(ctx) -> Path:
    """The pipeline's train step of an SFT stage: continues from the input model, reads the data step's folder."""
    model_args, data_args, sft_config = ctx.parse(*wired_arguments(ctx))
    return train_sft(model_args, data_args, sft_config, ctx.config, ctx.title)
