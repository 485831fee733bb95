"""How many optimizer steps a pretraining stage takes: its token budget divided by what one step trains.

    max_steps = train_tokens // (per_device_train_batch_size x gradient_accumulation_steps x ranks x seq_length)

The budget is the recipe's number (the paper's 377B tokens), so the same YAML trains the same tokens on 8 GPUs
or 512: the steps follow the launch. A ``max_steps`` written in the YAML must agree with that arithmetic; a
budget that is not a whole number of steps trains the whole steps and says what it leaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import RecipeError

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
