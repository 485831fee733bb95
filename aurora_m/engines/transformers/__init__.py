"""The default engine: transformers' Trainer (and TRL's trainers) under accelerate (DDP, FSDP2, DeepSpeed ZeRO).

Its runners are the kinds' own (``stages.py``); its checkpoints are Trainer's ``checkpoint-N`` folders.
"""

from __future__ import annotations

from ...stages import Engine


def set_aside(dirs, folder) -> None:
    """Trainer's checkpoints (complete ones; partial ones were set aside when listed) into ``folder``."""
    from ...train.checkpoints import complete_checkpoints

    for path in complete_checkpoints(dirs):
        path.rename(folder / path.name)


ENGINE = Engine(
    name="transformers",
    module="transformers",
    install="pip install 'transformers>=5' accelerate",
    checkpoints="aurora_m.train.checkpoints:complete_checkpoints",
    set_aside=set_aside,
    help="transformers' Trainer / TRL under accelerate (DDP, FSDP2, DeepSpeed ZeRO)",
)
