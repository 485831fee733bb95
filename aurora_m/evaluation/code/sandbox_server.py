"""One sandbox worker's fork server (``_supervisor.py``, run as ``python -I -S``): started on first use, sent one
program and its settings per line, its one-line answer read back; the program's fixed environment, and what its
directory holds afterwards (the last line of its output) before the directory is removed.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUPERVISOR = Path(__file__).with_name("_supervisor.py")


OUTPUT = "output.txt"  # the program's stdout and stderr, in its directory (_supervisor.OUTPUT)


SUPERVISOR_GRACE_S = 15.0  # beyond a job's timeout, before the supervisor itself is killed


STATUSES = ("passed", "failed", "timeout", "killed", "error")


def _environment() -> dict[str, str]:
    """The program's whole environment ({dir}: its directory): nothing of the evaluator's (tokens,
    credentials, proxies) is passed on."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "{dir}",
        "TMPDIR": "{dir}",
        "TMP": "{dir}",
        "TEMP": "{dir}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _remove_tree(path: str) -> None:
    def retry_writable(function, name, _exc):
        parent = os.path.dirname(name)
        for p in (parent, name):  # a program may have taken its own permissions away
            try:
                os.chmod(p, stat.S_IRWXU)
            except OSError:
                pass
        function(name)

    shutil.rmtree(path, **{"onexc" if sys.version_info >= (3, 12) else "onerror": retry_writable})


def _output_detail(workdir: str, output_limit: int) -> str:
    """The last line the program wrote (a traceback ends with the exception), marked when output was cut."""
    try:  # the program may have swapped the file for a link to one it cannot read: only its own file counts
        fd = os.open(os.path.join(workdir, OUTPUT), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with open(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return ""
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4096))
        tail = f.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else ""
    if size >= output_limit:
        return f"output limit of {output_limit} bytes reached; last line: {last[:120]}"
    return last


class _Server:
    """One worker's fork server (``_supervisor.py``): started on first use, and again after it failed."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.stderr = None

    def _start(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        # the evaluator's pid on the command line, which every supervisor and program process (forks) shows
        command = [sys.executable, "-I", "-S", str(SUPERVISOR), f"evaluator={os.getpid()}"]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd="/",
            env={k: v for k, v in _environment().items() if "{dir}" not in v},
            start_new_session=True,
        )

    def _died(self) -> str:
        self.close(kill=True)
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no message"

    def run(self, program: str, settings: dict, wait_s: float) -> tuple[str, float, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        request = json.dumps({"settings": settings, "program": program}).encode() + b"\n"
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
        except (OSError, ValueError):  # ValueError: closed meanwhile (Ctrl-C)
            return "error", 0.0, f"the sandbox server ended: {self._died()}"
        fd, line, deadline = proc.stdout.fileno(), b"", time.monotonic() + wait_s
        while not line.endswith(b"\n"):
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                self.close(kill=True)
                return "timeout", wait_s, "the sandbox server did not answer in time; killed"
            chunk = os.read(fd, 65536)
            if not chunk:
                return "error", 0.0, f"the sandbox server ended: {self._died()}"
            line += chunk
        match = re.fullmatch(rb"(\w+)\t([0-9.]+)\t(.*)\n", line)
        if not match or match[1].decode() not in STATUSES:
            return "error", 0.0, f"the sandbox server answered {line[:200]!r}"
        return match[1].decode(), float(match[2]), match[3].decode(errors="replace")

    def interrupt(self) -> None:
        """Kill the server from another thread: the worker using it reads the end and cleans up."""
        proc = self.proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None  # once, also when a worker and Ctrl-C close it together
        if proc is None:
            return
        if kill:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        else:
            try:
                proc.stdin.close()  # the server ends at end of input
            except OSError:
                pass
        try:
            proc.wait(timeout=SUPERVISOR_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
