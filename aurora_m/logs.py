"""Logging for the library: ``logging.getLogger(__name__)`` everywhere, set up once by the CLI or a script.

Only the main process (global rank 0) logs unless ``AURORA_M_LOG_ALL_RANKS=1``, in which case each
line says its rank; transformers and datasets follow the same verbosity. The CLI's result lines
(what a command answers) are not logs and stay plain on stdout.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

ROOT = "aurora_m"


def process_rank() -> int:
    """Global rank under torchrun / accelerate / Slurm launches (0 for a plain process)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def all_ranks() -> bool:
    return os.environ.get("AURORA_M_LOG_ALL_RANKS", "") not in ("", "0", "false")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (pytest and notebooks swap it), not the one at set-up time."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return all_ranks() or process_rank() == 0


def progress_disabled() -> bool:
    """``-q`` (or the user's own TQDM_DISABLE): for bars that pass ``disable=`` themselves, which tqdm's
    environment default does not reach."""
    return os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")


def quiet_progress() -> None:
    """No progress bars in this process and the ones it starts. tqdm reads TQDM_* when it is imported, so a
    command line calls this before it builds its parser (the stage dataclasses import transformers, whose
    logging imports tqdm); bars that pass ``disable=`` themselves ask :func:`progress_disabled`."""
    for name in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ[name] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    tqdm_std = sys.modules.get("tqdm.std")
    if tqdm_std is not None and not getattr(tqdm_std.tqdm, "_aurora_m_quiet", False):
        # imported already (main() called from Python after transformers): its TQDM_* defaults were read then,
        # so the default itself changes (a bar that passes disable= still decides for itself)
        tqdm_std.tqdm.__init__ = functools.partialmethod(tqdm_std.tqdm.__init__, disable=True)
        tqdm_std.tqdm._aurora_m_quiet = True


def setup_logging(verbosity: int = 0) -> None:
    """``verbosity``: -1 warnings only (``-q``), 0 info, 1 debug (``-v``). Safe to call twice."""
    if verbosity < 0:  # -q: warnings and errors only, so no progress bars either (ours, datasets', the Hub's)
        quiet_progress()
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0 else logging.WARNING)
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    logger.propagate = False
    if not any(getattr(h, "_aurora_m", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler._aurora_m = True
        prefix = f"[rank {process_rank()}] " if all_ranks() else ""
        handler.setFormatter(
            logging.Formatter(
                f"{prefix}[%(name)s] %(levelname)s %(message)s" if verbosity > 0 else f"{prefix}[aurora-m] %(message)s"
            )
        )
        handler.addFilter(_MainProcessOnly())
        logger.addHandler(handler)
    for handler in logger.handlers:
        handler.setLevel(level)
    _follow_libraries(verbosity)


def _follow_libraries(verbosity: int) -> None:
    """transformers / datasets: their warnings on the main process; replicas only say errors."""
    try:
        from transformers.utils import logging as hf_logging

        if process_rank() != 0 and not all_ranks():
            hf_logging.set_verbosity_error()
        elif verbosity > 0:
            hf_logging.set_verbosity_info()
        else:
            hf_logging.set_verbosity_warning()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    if process_rank() != 0 and not all_ranks():
        os.environ.setdefault("TQDM_DISABLE", "1")  # one progress bar, not one per rank


def log_through_logging(trainer) -> None:
    """Trainer prints its log dicts to stdout (tqdm.write); send them through our logger instead (stderr, main
    process only), keeping the progress bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    logger = logging.getLogger(f"{ROOT}.trainer")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            logger.info("step %d: %s", state.global_step, ", ".join(f"{k} {v}" for k, v in shown.items()))

    for old in (ProgressCallback, PrinterCallback):
        callback = trainer.pop_callback(old)
        if callback is not None:
            callback.on_log = on_log.__get__(callback)
            trainer.add_callback(callback)
