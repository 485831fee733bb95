"""Which checkpoints can be resumed from: only complete ones. A kill or a full disk mid-save leaves a
partial ``checkpoint-N``; it is moved aside (never deleted) with a warning, so the next run resumes
from the newest complete one instead of crashing on it."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import CHECKPOINT_PREFIX, TRAINER_STATE, StageDir
from ..logs import process_rank

logger = logging.getLogger(__name__)


def is_complete(checkpoint: Path) -> bool:
    """Trainer writes ``trainer_state.json`` after the weights, optimizer, scheduler and RNG states."""
    state = read_json_or_none(checkpoint / TRAINER_STATE)
    return bool(state) and state.get("global_step") == int(checkpoint.name[len(CHECKPOINT_PREFIX) :])


def complete_checkpoints(dirs: StageDir) -> list[Path]:
    """Complete checkpoints, oldest first; partial ones are set aside (by the main process only)."""
    complete, partial = [], []
    for checkpoint in dirs.checkpoints():
        (complete if is_complete(checkpoint) else partial).append(checkpoint)
    if partial and process_rank() == 0:
        aside = dirs.set_aside("partial")
        for checkpoint in partial:
            checkpoint.rename(aside / checkpoint.name)
        logger.warning(
            "set aside %d partial checkpoint(s) (%s) in %s: a save was cut short",
            len(partial),
            ", ".join(p.name for p in partial),
            aside,
        )
    return complete


def stream_position_callback(global_batch: int, seq_length: int, index_file: Path):
    """Saved in every checkpoint's trainer state (transformers' ExportableState): where the stream stands and
    what it was cut from, so a resume continues at the same position of the same index with the same batch."""
    import hashlib

    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    index_id = hashlib.blake2b(Path(f"{index_file}.json").read_bytes(), digest_size=8).hexdigest()

    class StreamPosition(TrainerCallback, ExportableState):
        def __init__(self):
            self.next_position = 0

        def state(self) -> dict:
            return {
                "args": {"global_batch": global_batch, "seq_length": seq_length, "index": index_id},
                "attributes": {"next_position": self.next_position},
            }

        def on_step_end(self, args, state, control, **kwargs):
            self.next_position = state.global_step * global_batch

        def check_resume(self, checkpoint: Path) -> None:
            """Refuse a resume whose batches would not line up with the positions already trained."""
            saved = (read_json_or_none(checkpoint / TRAINER_STATE) or {}).get("stateful_callbacks") or {}
            saved = saved.get(type(self).__name__)
            if not saved:
                return  # a checkpoint from before stream positions were saved: the step count still places it
            was, now = saved["args"], self.state()["args"]
            if was["index"] != now["index"]:  # only a resume the user chose after a change gets here
                logger.warning(
                    "%s was trained on another sampling index (the data or its budget changed since): "
                    "training goes on from position %d of the new index, so sequences may repeat or be "
                    "skipped relative to the old one",
                    checkpoint.name,
                    saved["attributes"]["next_position"],
                )
            if (was["global_batch"], was["seq_length"]) != (now["global_batch"], now["seq_length"]):
                raise RecipeError(
                    checkpoint / TRAINER_STATE,
                    "stream",
                    f"was trained with {was['global_batch']} sequences of {was['seq_length']} tokens "
                    f"per step, this launch has {now['global_batch']} of {now['seq_length']}: resume "
                    "with the same per_device_train_batch_size x gradient_accumulation_steps x ranks, "
                    "or the positions already trained would be repeated or skipped",
                )
            self.next_position = saved["attributes"]["next_position"]
            logger.info(
                "stream position %d (%s, step %s)",
                self.next_position,
                checkpoint.name,
                self.next_position // max(1, global_batch),
            )

    return StreamPosition()


def resume_checkpoint(training_args, dirs: StageDir) -> Path | None:
    """The checkpoint a launch resumes from: ``resume_from_checkpoint`` if given, else the newest complete one."""
    if training_args.resume_from_checkpoint:
        return Path(training_args.resume_from_checkpoint)
    complete = complete_checkpoints(dirs)
    return complete[-1] if complete else None
