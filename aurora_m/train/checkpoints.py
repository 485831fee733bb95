"""Which checkpoints can be resumed from: only complete ones. A kill or a full disk mid-save leaves a
partial ``checkpoint-N``; it is moved aside (never deleted) with a warning, so the next run resumes
from the newest complete one instead of crashing on it."""

from __future__ import annotations

import logging
from pathlib import Path

from ..io import read_json_or_none
from ..layout import CHECKPOINT_PREFIX, TRAINER_STATE, StageDir
from ..logs import process_rank

logger = logging.getLogger(__name__)


def is_complete(checkpoint: Path) -> bool:
    """Trainer writes ``trainer_state.json`` after the weights, optimizer, scheduler and RNG states."""
    state = read_json_or_none(checkpoint / TRAINER_STATE)
    return bool(state) and state.get("global_step") == int(checkpoint.name[len(CHECKPOINT_PREFIX):])


def complete_checkpoints(dirs: StageDir) -> list[Path]:
    """Complete checkpoints, oldest first; partial ones are set aside (by the main process only)."""
    complete, partial = [], []
    for checkpoint in dirs.checkpoints():
        (complete if is_complete(checkpoint) else partial).append(checkpoint)
    if partial and process_rank() == 0:
        aside = dirs.set_aside("partial")
        for checkpoint in partial:
            checkpoint.rename(aside / checkpoint.name)
        logger.warning("set aside %d partial checkpoint(s) (%s) in %s: a save was cut short",
                       len(partial), ", ".join(p.name for p in partial), aside)
    return complete
