"""The pipeline's data step of a pretrain or SFT stage: the stage's dataset into ``ctx.dirs.data``."""

from __future__ import annotations

from pathlib import Path

from .build import build_pretrain_dataset, build_sft_dataset


def _data_arguments(ctx):
    # a continued model keeps its chain's tokenizer: the data step takes it from the first stage's keys,
    # so it can run before the stages upstream have trained (on a CPU node, say)
    # use_cpu: the trainer keys are parsed but not used here, and bf16's "needs a GPU" check must not stop
    # a data step on a CPU node; an engine's own keys (after the kind's) are not the data step's
    model_args, data_args, *_ = ctx.parse(*ctx.tokenizer_args, "--use_cpu", "true")
    return model_args, data_args


def run_pretrain_data_step(ctx) -> Path:
    model_args, mix_args = _data_arguments(ctx)
    return build_pretrain_dataset(model_args, mix_args, ctx.dirs.data.root, ctx.config, ctx.title)


def run_sft_data_step(ctx) -> Path:
    _, data_args = _data_arguments(ctx)
    return build_sft_dataset(data_args, ctx.dirs.data.root, ctx.config)
