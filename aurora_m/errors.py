"""The one error type users see, and how every entry point turns failures into one line and an exit code."""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
LOW_SPACE = 64 << 20  # a failed write with less than this free is a full disk, whatever the library said


class RecipeError(Exception):
    """A mistake in something the user gave us (a recipe, a flag, a data file, an output folder).

    Entry points print ``str(err)`` on one line and exit with code 2, without a traceback.
    """

    def __init__(self, file: str | Path | None, key: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.key = key
        self.message = " ".join(str(message).split())  # one line, whatever the cause said
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


def exception_chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception behind it, suppressed contexts included (``raise ... from None`` hides the
    library error a wrapper replaced, yet it is often the one that says what happened)."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _disk_full(exc: BaseException, output_dir: str | Path | None) -> str | None:
    """The path a write failed on for lack of space, or None (torch reports it as a bare RuntimeError)."""
    for err in exception_chain(exc):
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return str(err.filename or output_dir or "")
        if "No space left on device" in str(err):
            return str(getattr(err, "filename", None) or output_dir or "")
    if output_dir and isinstance(exc, (OSError, RuntimeError)):  # torch: "unexpected pos ...", "file write failed"
        probe = Path(output_dir)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        usage = shutil.disk_usage(probe)
        if usage.free < min(LOW_SPACE, 0.05 * usage.total):
            return str(output_dir)
    return None


def user_facing(exc: BaseException, output_dir: str | Path | None = None) -> tuple[str, int] | None:
    """(one line, exit code) for failures that are the user's to fix, or None for our own bugs."""
    if isinstance(exc, RecipeError):
        return str(exc), EXIT_USER_ERROR
    if isinstance(exc, KeyboardInterrupt):
        from .signals import EXIT_TERMINATED, Terminated

        terminated = isinstance(exc, Terminated)
        return (
            f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: run the same command again to resume "
            "(complete steps and checkpoints are kept)",
            EXIT_TERMINATED if terminated else EXIT_INTERRUPTED,
        )
    full = _disk_full(exc, output_dir)
    if full is not None:
        return (
            f"no space left on device while writing {full}: free some space and run again to resume",
            EXIT_USER_ERROR,
        )
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}: choose a folder you can write to", EXIT_USER_ERROR
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return f"read-only file system: {exc.filename}: choose a folder you can write to", EXIT_USER_ERROR
    return None


def exit_on_failure(prog: str, exc: BaseException, output_dir: str | Path | None = None) -> int:
    """Print one line for a user-facing failure and return its exit code; re-raise anything else."""
    known = user_facing(exc, output_dir)
    if known is None:
        raise exc
    message, code = known
    if isinstance(exc, KeyboardInterrupt):  # no helper process outlives us (nor holds the pipe of `| tee`)
        from .signals import end_children

        end_children()
    _close_progress_bars()
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _close_progress_bars() -> None:
    """A bar cut short leaves the cursor at its end: closed, it ends its line, so the error starts its own."""
    tqdm_module = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001  (a bar whose stream is gone: the error line matters more)
            pass
