"""A pretrain stage's YAML (model, parallelism, token budget, optimizer, schedule, checkpoints, corpus) as the
config nanotron reads. Pure: the caller gathers the facts (paths, the data step's mixture, the upstream's
checkpoint); nothing here touches nanotron, the disk or a GPU.

- **budget**: ``train_steps = train_tokens // (micro batch x accumulation x dp x seq_length)``, the same
  arithmetic as the transformers engine (``budget.py``) with dp ranks; a stated ``max_steps`` must agree.
- **hand-off**: CAP starts from converted weights (``model.init_method.path``). CAT with ``init_from: weights``
  starts from CAP's last checkpoint the same way, a fresh optimizer and schedule. With ``full_state`` it is
  nanotron's own continuation: CAP's last checkpoint is resumed (weights, AdamW moments, step count), CAP is
  listed as the first data stage and CAT starts at CAP's last step + 1, so the schedule, written over the
  global steps, carries on. Each stage resumes its own checkpoints folder once it holds one (``latest.txt``).
- **schedule**: transformers' ``lr_scheduler_type`` in nanotron's warmup / decay terms.
- **precision**: nanotron runs on GPUs in bf16 (fp16 with ``fp16: true``; its flash-attn attention has no
  float32): the transformers launch keys ``use_cpu`` and ``bf16`` are not read, so the tiny twin's YAML runs too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ...budget import Budget
from ...errors import RecipeError
from .modelconfig import GPTBigCodeConfig

DECAY = {"linear": "linear", "cosine": "cosine", "cosine_with_min_lr": "cosine"}
WSD_DECAY = {"linear": "linear", "cosine": "cosine", "1-sqrt": "1-sqrt"}
# keys of a pretrain stage YAML this engine reads; the rest (evaluation, monitoring, the transformers
# launch) are listed once in the log as not used
READ_KEYS = {
    "model_name_or_path",
    "base_config",
    "config_patches",
    "model_seed",
    "tokenizer_name_or_path",
    "tokenizer_train_files",
    "tokenizer_vocab_size",
    "init_from",
    "init_state_from",
    "seq_length",
    "train_tokens",
    "mixture",
    "mixture_seed",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "optim",
    "fp16",
    "activation_checkpointing",
    "gradient_checkpointing",
    "save_strategy",
    "save_steps",
    "seed",
    "logging_steps",
    "dataloader_num_workers",
    "output_dir",
    "tp",
    "pp",
    "dp",
    "pp_engine",
    "tp_mode",
    "zero_stage",
}


@dataclass(frozen=True)
class Upstream:
    """The checkpoint a ``full_state`` stage carries on from (nanotron's checkpoints folder and its last step)."""

    stage: str
    checkpoints: Path
    step: int


@dataclass(frozen=True)
class Corpus:
    """What the data step built, as nanotron reads it: one token-shard folder per source and its share."""

    folders: list[Path]
    weights: list[float]
    tokenizer_name: str  # what datatrove wrote into the shards' .metadata (nanotron checks it)
    vocab_size: int
    token_size: int

    @classmethod
    def from_mixture(cls, mixture: dict, tokens_dir, tokenizer_name: str) -> Corpus:
        rows = [s for s in mixture.get("sources", []) if s.get("windows", 0) > 0]
        return cls(
            [tokens_dir(s["name"]) for s in rows],
            [round(float(s.get("realised_share", s.get("share", 0))), 6) for s in rows],
            tokenizer_name,
            int(mixture["tokenizer_vocab"]),
            int(mixture.get("token_size", 2)),
        )


def parallel_sizes(parallel, world_size: int | None, config_file) -> tuple[int, int, int]:
    tp, pp, dp = parallel.tp, parallel.pp, parallel.dp
    for key, value in (("tp", tp), ("pp", pp), ("dp", dp)):
        if value is not None and value < 1:
            raise RecipeError(config_file, key, f"expected a positive integer, got {value}")
    if dp is None:
        if not world_size:
            raise RecipeError(config_file, "dp", "not set, and the launch's GPU count is unknown: set dp")
        if world_size % (tp * pp):
            raise RecipeError(config_file, "tp", f"tp {tp} x pp {pp} does not divide the launch's {world_size} GPUs")
        dp = world_size // (tp * pp)
    elif world_size and tp * pp * dp != world_size:
        raise RecipeError(
            config_file, "dp", f"tp {tp} x pp {pp} x dp {dp} = {tp * pp * dp} GPUs, but the launch has {world_size}"
        )
    return tp, pp, dp


def _schedule(training_args, total: int, config_file) -> dict:
    kind = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    kwargs = training_args.lr_scheduler_kwargs or {}
    lr = float(training_args.learning_rate)
    warmup = 0 if kind == "constant" else int(training_args.get_warmup_steps(total))  # constant: no warmup
    # nanotron's linear warmup gives step 0 a rate of 0 even with no warmup steps; transformers trains step 0 at
    # the full rate: a "constant" warmup style does (it applies to step 0 only when there are no warmup steps)
    out = {"learning_rate": lr, "lr_warmup_steps": warmup, "lr_warmup_style": "linear" if warmup else "constant"}
    if kind in ("constant", "constant_with_warmup"):
        # a constant tail is a one-step "decay" from lr to lr: with no warmup and no decay steps, nanotron's
        # lr_lambda (helpers.py at the pinned commit) returns the rate itself instead of 1, i.e. lr squared
        return {**out, "lr_decay_style": "linear", "lr_decay_steps": 1, "min_decay_lr": lr}
    if kind in DECAY:
        floor = 0.0
        if kind == "cosine_with_min_lr":
            floor = kwargs["min_lr"] if "min_lr" in kwargs else lr * float(kwargs.get("min_lr_rate", 0.0))
        return {
            **out,
            "lr_decay_style": DECAY[kind],
            "lr_decay_steps": max(0, total - warmup),
            "min_decay_lr": float(floor),
        }
    if kind == "warmup_stable_decay":
        decay = int(kwargs.get("num_decay_steps", 0))
        style = kwargs.get("decay_type", "cosine")
        if style not in WSD_DECAY:
            raise RecipeError(
                config_file, "lr_scheduler_kwargs", f"decay_type {style!r}: nanotron decays {', '.join(WSD_DECAY)}"
            )
        return {
            **out,
            "lr_decay_style": WSD_DECAY[style],
            "lr_decay_steps": decay,
            "lr_decay_starting_step": total - decay,
            "min_decay_lr": lr * float(kwargs.get("min_lr_ratio", 0)),
        }
    raise RecipeError(
        config_file,
        "lr_scheduler_type",
        f"{kind!r} has no nanotron equivalent (constant, "
        f"constant_with_warmup, linear, cosine, cosine_with_min_lr, "
        "warmup_stable_decay)",
    )


def _steps_of(value, steps: int) -> int:
    """A transformers ``*_steps`` key: a count, or below 1 a fraction of the training steps."""
    return max(1, math.ceil(value * steps)) if 0 < value < 1 else int(value)


def emit(
    model_args,
    mix_args,
    training_args,
    parallel,
    *,
    project: str,
    stage: str,
    model_config: GPTBigCodeConfig,
    init: Path,
    checkpoints: Path,
    corpus: Corpus,
    world_size: int | None = None,
    upstream: Upstream | None = None,
    resume_own: bool = False,
    config_file: str | Path = "<stage config>",
) -> dict:
    """nanotron's config (as a mapping, ready for ``yaml.safe_dump``) for one launch of a pretrain stage."""
    optim = str(getattr(training_args.optim, "value", training_args.optim))
    if "adamw" not in optim:
        raise RecipeError(config_file, "optim", f"{optim!r}: the nanotron engine trains with AdamW")
    if parallel.pp_engine not in ("1f1b", "afab"):
        raise RecipeError(config_file, "pp_engine", f"expected 1f1b or afab, got {parallel.pp_engine!r}")
    if parallel.tp_mode not in ("all_reduce", "reduce_scatter"):
        raise RecipeError(config_file, "tp_mode", f"expected all_reduce or reduce_scatter, got {parallel.tp_mode!r}")
    if parallel.zero_stage not in (0, 1):
        raise RecipeError(config_file, "zero_stage", f"expected 0 or 1, got {parallel.zero_stage}")
    tp, pp, dp = parallel_sizes(parallel, world_size, config_file)
    if model_config.num_attention_heads % tp or model_config.vocab_size % tp:
        raise RecipeError(
            config_file,
            "tp",
            f"{tp} must divide the {model_config.num_attention_heads} heads and "
            f"the vocabulary of {model_config.vocab_size}",
        )
    if pp > model_config.num_hidden_layers:
        raise RecipeError(config_file, "pp", f"{pp} stages for {model_config.num_hidden_layers} layers")
    if mix_args.seq_length > model_config.max_position_embeddings:
        raise RecipeError(
            config_file,
            "seq_length",
            f"{mix_args.seq_length} is longer than the model's "
            f"{model_config.max_position_embeddings} learned positions",
        )
    budget = Budget(
        training_args.per_device_train_batch_size,
        training_args.gradient_accumulation_steps,
        dp,
        mix_args.seq_length,
        int(mix_args.train_tokens),
    )
    if budget.steps < 1:
        raise RecipeError(
            config_file,
            "train_tokens",
            f"{mix_args.train_tokens:,} is less than one optimizer step ({budget.arithmetic()})",
        )
    if training_args.max_steps and training_args.max_steps > 0 and training_args.max_steps != budget.steps:
        raise RecipeError(
            config_file,
            "max_steps",
            f"{training_args.max_steps} disagrees with the token budget: "
            f"{budget.arithmetic()} (dp = data-parallel ranks)",
        )
    offset = upstream.step if upstream else 0
    total = offset + budget.steps
    dataset = {
        "dataset_folder": [str(f) for f in corpus.folders],
        "dataset_weights": corpus.weights,
        "tokenizer_name": corpus.tokenizer_name,
        "vocab_size": corpus.vocab_size,
        "token_size_in_bytes": corpus.token_size,
    }
    stages = [
        {
            "name": stage,
            "start_training_step": offset + 1,
            "sequence_length": mix_args.seq_length,
            "data": {
                "dataset": dataset,
                "seed": mix_args.mixture_seed,
                "num_loading_workers": training_args.dataloader_num_workers,
            },
        }
    ]
    if upstream:  # the stage already trained, as its checkpoint's metadata lists it (never read again)
        stages.insert(
            0,
            {
                "name": upstream.stage,
                "start_training_step": 1,
                "sequence_length": mix_args.seq_length,
                "data": {"dataset": None, "seed": mix_args.mixture_seed},
            },
        )
    save = training_args.save_strategy
    interval = (
        _steps_of(training_args.save_steps, budget.steps) if getattr(save, "value", save) == "steps" else budget.steps
    )
    resume = checkpoints if (resume_own or not upstream) else upstream.checkpoints
    return {
        "general": {"project": project, "run": stage, "seed": training_args.seed, "ignore_sanity_checks": True},
        "parallelism": {
            "tp": tp,
            "pp": pp,
            "dp": dp,
            "pp_engine": parallel.pp_engine,
            "tp_mode": parallel.tp_mode,
            "tp_linear_async_communication": parallel.tp_mode == "reduce_scatter",
            "recompute_layer": bool(
                getattr(training_args, "activation_checkpointing", False) or training_args.gradient_checkpointing
            ),
            "expert_parallel_size": 1,
            "context_parallel_size": 1,
        },
        "model": {
            "dtype": "float16" if training_args.fp16 else "bfloat16",
            "init_method": {"path": str(init)},
            "make_vocab_size_divisible_by": 1,
            "ddp_bucket_cap_mb": 25,
            "model_config": model_config.as_dict(),
        },
        "tokenizer": {"tokenizer_name_or_path": corpus.tokenizer_name},
        "checkpoints": {
            "checkpoints_path": str(checkpoints),
            "checkpoint_interval": interval,
            "save_initial_state": False,
            "save_final_state": True,
            "resume_checkpoint_path": str(resume),
            "load_optimizer": True,
            "load_lr_scheduler": True,
        },
        "logging": {
            "log_level": "info",
            "log_level_replica": "info",
            "iteration_step_info_interval": _steps_of(training_args.logging_steps, budget.steps),
        },
        "tokens": {
            "sequence_length": mix_args.seq_length,
            "train_steps": total,
            "micro_batch_size": training_args.per_device_train_batch_size,
            "batch_accumulation_per_replica": training_args.gradient_accumulation_steps,
            "val_check_interval": -1,
            "limit_val_batches": 0,
            "limit_test_batches": 0,
        },
        "optimizer": {
            "optimizer_factory": {
                "name": "adamW",
                "adam_beta1": training_args.adam_beta1,
                "adam_beta2": training_args.adam_beta2,
                "adam_eps": training_args.adam_epsilon,
                "torch_adam_is_fused": True,
            },
            "zero_stage": parallel.zero_stage,
            "weight_decay": training_args.weight_decay,
            "clip_grad": training_args.max_grad_norm or None,
            "accumulate_grad_in_fp32": True,
            "learning_rate_scheduler": _schedule(training_args, total, config_file),
        },
        "data_stages": stages,
    }


def unused_keys(given: set[str]) -> list[str]:
    """Keys a stage YAML gives that the nanotron engine does not read (logged, so none is silently dropped)."""
    return sorted(k for k in given if k not in READ_KEYS and k != "env")
