"""The pipeline's data step of a pretrain or SFT stage: the stage's dataset into ``ctx.dirs.data``."""

from __future__ import annotations

from pathlib import Path

from ..args import MixtureArguments
from .build import build_pretrain_dataset, build_sft_dataset


def run_data_step(ctx) -> Path:
    # the tokenizer of a continued model is the one stored with its input model
    extra = ["--model_name_or_path", str(next(iter(ctx.input_models.values())))] if ctx.input_models else []
    model_args, data_args, _ = ctx.parse(*extra)
    if isinstance(data_args, MixtureArguments):
        return build_pretrain_dataset(model_args, data_args, ctx.dirs.data.root, ctx.config, ctx.title)
    return build_sft_dataset(data_args, ctx.dirs.data.root, ctx.config)
