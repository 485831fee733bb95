"""SIGTERM ends a run as Ctrl-C does: Slurm, ``timeout``, ``docker stop`` and ``kill`` send it to our process alone.

Python's default for SIGTERM is to die on the spot: no ``finally`` runs, the run lock and temporaries stay
behind, and the helper processes (datatrove's workers, multiprocess pools, the code sandbox) live on, holding
the pipe of ``aurora-m run ... | tee log`` open forever. Here it raises :class:`Terminated` (a
KeyboardInterrupt), so the same clean-up runs as for Ctrl-C; the entry point then ends every process we
started (:func:`end_children`) and says in one line how to resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

EXIT_TERMINATED = 128 + signal.SIGTERM  # as shells report a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that every ``finally`` and ``except KeyboardInterrupt`` runs."""


# The processes that were already below us when the outermost block began: the caller's own (``main()`` called
# from Python: a notebook's or a test's fork server, its pools), which are not ours to end
_before: set[int] = set()
_depth = 0


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while cleaning up ends us at once
    # our helpers get it at once too, as a terminal's Ctrl-C reaches the whole group: a pool that waits for its
    # workers while unwinding would otherwise wait for workers that never heard of it
    for pid in ours():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` inside the block (main thread only: elsewhere Python takes no signals);
    the handler found is put back after it (``main()`` called from Python, as the tests do)."""
    global _before, _depth
    if _depth == 0:
        _before = set(descendants())
    _depth += 1
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        _depth -= 1


def ours() -> list[int]:
    """The processes below us that the running command started (not those its caller had before it)."""
    return [pid for pid in descendants() if pid not in _before]


def descendants(pid: int | None = None) -> list[int]:
    """Every living process below ``pid`` (children first), read from /proc (Linux; nothing elsewhere)."""
    parents: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [os.getpid() if pid is None else pid]
    while todo:
        children = parents.get(todo.pop(0), [])
        found += children
        todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def end_children(grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process the command started (and theirs: all found before any is signalled, so none escapes by
    being handed to init), SIGKILL what is left after ``grace_s``; returns their ids."""
    pids = ours()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    # an ended child stays a zombie until whoever started it waits for it (a pool, a fork server's owner, a
    # Popen): it counts as ended here, and is not reaped here, since its owner's wait would then fail (ECHILD)
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return pids
