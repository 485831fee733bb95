"""One run per folder: an advisory lock the kernel releases when its holder dies, so a lock left by a killed
run is taken over, and a second live run exits with one line naming the holder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from .errors import RecipeError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def run_lock(lock_file: Path, what: str):
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            who = (
                (
                    f"process {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}, "
                    f"since {holder.get('since')})"
                )
                if holder
                else "another process"
            )
            raise RecipeError(
                lock_file.parent,
                None,
                f"in use by {who}: one run per folder; wait for it or choose another --output-dir",
            ) from None
        previous = _read(fd)
        if previous:
            logger.info(
                "taking over the lock of a run that is gone (process %s on %s)",
                previous.get("pid"),
                previous.get("host"),
            )
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": what,
                    "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "argv": " ".join(sys.argv[:1]),
                }
            ).encode(),
            0,
        )
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # we are leaving (even on an error): nothing to take over next time
    finally:
        os.close(fd)  # closing drops the lock


def _read(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
