"""The keys a stage on the nanotron engine adds to its kind's (the transformers engine does not know them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ParallelismArguments:
    """How an ``engine: nanotron`` stage splits the model over GPUs (tensor x pipeline x data parallel)."""

    tp: int = field(default=1, metadata={"help": "nanotron: tensor-parallel size (Aurora-M: 4)."})
    pp: int = field(default=1, metadata={"help": "nanotron: pipeline-parallel size (Aurora-M: 4)."})
    dp: int | None = field(
        default=None,
        metadata={
            "help": "nanotron: data-parallel size (default: the launch's GPUs / (tp x pp); the "
            "token budget's step count follows it)."
        },
    )
    pp_engine: str = field(default="1f1b", metadata={"help": "nanotron: pipeline schedule, 1f1b or afab."})
    tp_mode: str = field(
        default="all_reduce", metadata={"help": "nanotron: all_reduce, or reduce_scatter (sequence parallel)."}
    )
    zero_stage: int = field(default=0, metadata={"help": "nanotron: 0, or 1 (optimizer state sharded over dp)."})
