"""What every training stage does around ``trainer.train()``: resume, save once, log the loss."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..io import write_json
from ..plots import plot_loss
from ..recipe import redact

FINAL_MODEL = "model"


def train_and_save(trainer, title: str) -> Path:
    """Train (resuming from the newest checkpoint in output_dir), then write ``output_dir/model``.

    Every rank takes part in saving (ZeRO-3 / FSDP gather there); only the main process renames
    the finished folder into place, so ``model/`` exists only when complete.
    """
    from transformers.trainer_utils import get_last_checkpoint

    args = trainer.args
    out = Path(args.output_dir)
    resume = args.resume_from_checkpoint
    if resume is None and out.is_dir():
        resume = get_last_checkpoint(str(out))
    if resume:
        print(f"[train] resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    partial = out / f".{FINAL_MODEL}.partial"
    trainer.save_model(str(partial))
    trainer.accelerator.wait_for_everyone()
    final = out / FINAL_MODEL
    if trainer.is_world_process_zero():
        (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle: never published
        write_json(partial / "training_args.json", redact(args.to_dict()))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        history = trainer.state.log_history
        write_json(out / "log_history.json", history)
        if any("loss" in e for e in history):
            plot_loss(history, out / "loss.png", title)
    trainer.accelerator.wait_for_everyone()
    return final


def describe_budget(args, seq_length: int, sequences: int) -> str:
    """The token budget of a run written next to the numbers that make it (nanoGPT style)."""
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    steps = args.max_steps if args.max_steps > 0 else int(args.num_train_epochs * sequences // per_step)
    tokens = steps * per_step * seq_length
    return (f"[train] {per_step} seqs/step ({args.per_device_train_batch_size} x {args.gradient_accumulation_steps} "
            f"accum x {max(1, args.world_size)} ranks) x {seq_length} tokens = {per_step * seq_length:,} tokens/step; "
            f"{steps} steps = {tokens:,} tokens; dataset {sequences * seq_length:,} tokens "
            f"({tokens / max(1, sequences * seq_length):.2f} epochs)")
