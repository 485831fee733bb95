"""What every training stage does around ``trainer.train()``: resume, keep secrets out, save once, plot the loss."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from ..io import apply_umask, replace_dir, write_json
from ..layout import TRAINING_ARGS_JSON, TRAINING_ARGS_PICKLE, DatasetDir, StageDir
from ..locking import run_lock
from ..logs import log_through_logging
from ..plots import plot_loss
from ..redaction import redact
from .checkpoints import resume_checkpoint
from .saving import save_full_model

logger = logging.getLogger(__name__)
MACHINE_PATHS = ("output_dir", "logging_dir", "run_name", "resume_from_checkpoint")  # this machine's, not the model's


def open_checkpoint_permissions(trainer) -> None:
    """Checkpoints follow the user's umask too (safetensors writes 0600), so a colleague can resume or inspect them."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class OpenPermissions(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero and (last := get_last_checkpoint(args.output_dir)):
                apply_umask(last)

    trainer.add_callback(OpenPermissions())


def wired_arguments(ctx) -> list[str]:
    """What the pipeline wires into a train step: the data step's folder and the model it continues from."""
    extra = ["--dataset_dir", str(ctx.dirs.data.root)]
    if ctx.input_models:
        extra += ["--model_name_or_path", str(next(iter(ctx.input_models.values())))]
    return extra


def stage_dataset(training_args, dataset_dir: str | None, build) -> DatasetDir:
    """The stage's dataset (``dataset_dir``, else the stage folder's ``data/``), built by ``build(folder)`` when it
    is not: once per launch, by the main process of the first node, while every other rank of every node waits
    (a shared filesystem holds one dataset, so one builder). A dataset already built is reused as is (scripts);
    ``aurora-m`` rebuilds it beforehand when its sources or keys change."""
    data = DatasetDir(dataset_dir) if dataset_dir else StageDir(training_args.output_dir).data
    if data.is_built():
        logger.info("training on the dataset in %s", data.root)
        return data
    with training_args.main_process_first(local=False, desc="build dataset"):  # one builder, all nodes
        if not data.is_built():
            build(data.root)
    return data


def keep_token_out_of_files(args) -> None:
    """Trainer pickles its arguments into every checkpoint: the Hub token goes to the environment instead,
    where huggingface_hub finds it, and never into a file."""
    token = getattr(args, "hub_token", None)
    if token:
        os.environ.setdefault("HF_TOKEN", token)
        args.hub_token = None


def train_and_save(trainer, dirs: StageDir, title: str, after_save=None) -> Path:
    """Train (resuming from the newest complete checkpoint), then write ``dirs.model`` in one rename.

    Every rank takes part in saving (ZeRO-3 / FSDP gather there); only the main process renames
    the finished folder into place, so the model folder exists only when complete; ``after_save(folder)``
    runs there on the saved folder first (LoRA: the adapter moves out, the merged model goes in). The main
    process holds the stage folder's training lock throughout: a second run into the same folder stops at once.
    """
    with contextlib.ExitStack() as stack:
        if trainer.is_world_process_zero():
            stack.enter_context(run_lock(dirs.train_lock, "training"))
        return _train_and_save(trainer, dirs, title, after_save)


def _train_and_save(trainer, dirs: StageDir, title: str, after_save) -> Path:
    args = trainer.args
    log_through_logging(trainer)
    open_checkpoint_permissions(trainer)
    resume = resume_checkpoint(args, dirs)
    resume = str(resume) if resume else None
    if resume:
        logger.info("resuming from %s", resume)
        for callback in trainer.callback_handler.callbacks:
            if hasattr(callback, "check_resume"):
                callback.check_resume(Path(resume))
    trainer.train(resume_from_checkpoint=resume)
    partial = dirs.model_partial
    if trainer.is_world_process_zero() and partial.exists():
        shutil.rmtree(partial)  # left by a save that was killed
    trainer.accelerator.wait_for_everyone()
    save_full_model(trainer, partial)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        (partial / TRAINING_ARGS_PICKLE).unlink(missing_ok=True)
        if after_save is not None:
            after_save(partial)
        saved_args = {k: v for k, v in args.to_dict().items() if k not in MACHINE_PATHS}
        write_json(partial / TRAINING_ARGS_JSON, redact(saved_args))
        # an older model a kill left moved aside by an earlier version of this swap
        shutil.rmtree(dirs.model_previous, ignore_errors=True)
        replace_dir(partial, dirs.model)  # the old model moved aside (restored by the sweep if killed), then gone
        history = trainer.state.log_history
        write_json(dirs.log_history, history)
        if any("loss" in e for e in history):
            plot_loss(history, dirs.loss_png, title)
    trainer.accelerator.wait_for_everyone()
    return dirs.model
