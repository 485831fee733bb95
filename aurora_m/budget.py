"""How many optimizer steps a pretraining stage takes: its token budget divided by what one step trains.

    max_steps = train_tokens // (per_device_train_batch_size x gradient_accumulation_steps x ranks x seq_length)

The budget is the recipe's number (the paper's 377B tokens), so the same YAML trains the same tokens on 8 GPUs
or 512: the steps follow the launch. A ``max_steps`` written in the YAML must agree with that arithmetic; a
budget that is not a whole number of steps trains the whole steps and says what it leaves.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import RecipeError
from .overrides import number

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    per_device: int
    accumulation: int
    ranks: int
    seq_length: int
    train_tokens: int

    @property
    def sequences_per_step(self) -> int:
        return self.per_device * self.accumulation * self.ranks

    @property
    def tokens_per_step(self) -> int:
        return self.sequences_per_step * self.seq_length

    @property
    def steps(self) -> int:
        return self.train_tokens // self.tokens_per_step

    def arithmetic(self) -> str:
        left = self.train_tokens - self.steps * self.tokens_per_step
        tail = f"; the last {left:,} tokens (less than one step) are not trained" if left else ""
        return (
            f"max_steps = train_tokens {self.train_tokens:,} / ({self.per_device} per device x "
            f"{self.accumulation} accumulation x {self.ranks} ranks x {self.seq_length} tokens = "
            f"{self.tokens_per_step:,} tokens/step) = {self.steps:,} steps{tail}"
        )


def budget_of(training_args, train_tokens: int, seq_length: int) -> Budget:
    return Budget(
        training_args.per_device_train_batch_size,
        training_args.gradient_accumulation_steps,
        max(1, training_args.world_size),
        seq_length,
        int(train_tokens),
    )


def check_budget(
    training_args, train_tokens: int, seq_length: int, config_file: str | Path = "<stage config>"
) -> Budget:
    """The budget of this launch (its ranks from the launcher), refused in one line when it is less than a step
    or a stated ``max_steps`` disagrees: from the recipe and the launch alone, so a script says it before its
    data step, not after it."""
    budget = budget_of(training_args, train_tokens, seq_length)
    if budget.steps < 1:
        raise RecipeError(
            config_file,
            "train_tokens",
            f"{train_tokens:,} is less than one optimizer step of {budget.tokens_per_step:,} tokens "
            f"({budget.arithmetic()})",
        )
    stated = training_args.max_steps
    if stated and stated > 0 and stated != budget.steps:
        raise RecipeError(
            config_file,
            "max_steps",
            f"{stated} disagrees with the token budget: {budget.arithmetic()}. Delete max_steps from the stage "
            f"YAML (it is derived from the budget, the batch and the number of ranks), or change train_tokens or "
            f"the batch to match",
        )
    return budget


def derive_max_steps(
    training_args, train_tokens: int, seq_length: int, config_file: str | Path = "<stage config>"
) -> Budget:
    """Set ``training_args.max_steps`` from the budget (logged with its arithmetic); a stated one must agree."""
    budget = check_budget(training_args, train_tokens, seq_length, config_file)
    training_args.max_steps = budget.steps
    logger.info(budget.arithmetic())
    return budget


def launch_ranks() -> int:
    """The processes of the launch a check runs in: torchrun and accelerate launch set WORLD_SIZE, as they do for
    the trainer; recipes/launch.slurm sets AURORA_M_LAUNCH_RANKS for the checks and the data step it runs before
    launching (nodes x GPUs); ``aurora-m`` trains a transformers stage in its own single process."""
    for variable in ("WORLD_SIZE", "AURORA_M_LAUNCH_RANKS"):
        size = number(os.environ.get(variable) or "nan")
        if math.isfinite(size) and size >= 1:
            return int(size)
    return 1


def check_stage_budget(config: dict, defaults: dict, where: Callable[[str], tuple], ranks: int | None = None) -> None:
    """A stage mapping's stated ``max_steps`` against its token budget over :func:`launch_ranks`, before any data
    step. ``defaults``: the dataclass defaults of the keys it leaves out; ``where(key)``: ``(file, key)`` for the
    error, the YAML or the command line. ``ranks``: the launch's processes when known (an accelerate config's)."""
    if config.get("max_steps") is None or "train_tokens" not in config:
        return
    keys = ("per_device_train_batch_size", "gradient_accumulation_steps", "seq_length", "max_steps", "train_tokens")
    values = {k: number(config.get(k, defaults.get(k))) for k in keys}
    if not all(math.isfinite(v) and v >= 1 for v in values.values()):
        return  # a missing default or a non-number: the type and range checks speak for those
    from types import SimpleNamespace

    launch = SimpleNamespace(
        per_device_train_batch_size=int(values["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(values["gradient_accumulation_steps"]),
        world_size=ranks or launch_ranks(),
        max_steps=int(values["max_steps"]),
    )
    try:
        check_budget(launch, int(values["train_tokens"]), int(values["seq_length"]))
    except RecipeError as err:  # named where the key was given: the YAML or the command line
        raise RecipeError(*where(err.key or "max_steps"), err.message) from None


def check_launch_budget(stage: dict, where: Callable[[str], tuple], ranks: int | None = None) -> None:
    """:func:`check_stage_budget` for a stage mapping read outside validation (``python -m aurora_m.extras``, which
    recipes/launch.slurm runs before its data step), its defaults from the pretraining dataclasses."""
    if "train_tokens" not in stage:  # only pretraining stages have a token budget
        return
    from dataclasses import fields

    from transformers import TrainingArguments

    from .args import MixtureArguments

    defaults = {f.name: f.default for cls in (MixtureArguments, TrainingArguments) for f in fields(cls)}
    check_stage_budget(stage, defaults, where, ranks)
