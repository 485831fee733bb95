"""Running untrusted (model-written) Python programs: one process per program, confined, in parallel.

``Executor`` is the interface the code suite depends on; ``LocalSandbox`` runs programs on this machine. A
remote executor (a sandbox service at scale, a VM or gVisor per program) replaces it by implementing ``run``.
Running model-written code needs an explicit opt-in: ``AURORA_M_ALLOW_CODE_EXECUTION=1``.

Each worker is a fork server (``_supervisor.py``, started as ``python -I -S``: no site, no user environment,
a fixed minimal environment), so a program starts as a fork of a small warm interpreter, not a new one.
What a program gets (``isolation()`` names the level this machine gives; it is probed once and logged):

- always: its own processes, in a new temporary directory that is its working directory, HOME and TMPDIR,
  removed afterwards; stdin /dev/null; the fixed environment (no token or other variable of the evaluator);
  limits on wall time (``Job.timeout_s``), address space per process (``Job.memory_mb``), CPU seconds,
  processes (``process_limit``, RLIMIT_NPROC), output and file size (``output_limit``: stdout and stderr go to
  one file; past the limit writes fail), no core files; no_new_privs.
- namespaces (where user namespaces work; root or not): new user, network, PID and IPC namespaces. No network
  (only a down loopback). The PID namespace dies with the program: at its end or on timeout the kernel kills
  every process it started, whatever it did (new sessions, double forks); it cannot see or signal anything
  outside. Its capabilities are dropped. As root it runs as uid 61000 + the worker's slot (so RLIMIT_NPROC
  counts its processes only) keeping only CAP_DAC_READ_SEARCH over root's files inside its user namespace
  (an interpreter installed in /root stays importable; Landlock decides what it may read); otherwise as the
  user (Linux 5.14+ counts RLIMIT_NPROC per user namespace).
- Landlock (Linux 5.13+, where the kernel has it): writes only inside its directory and to /dev/null; reads
  and runs only the Python installation and the system's libraries and programs (/usr, /lib, ...: no token
  files, no other process' /proc/<pid>/environ); ABI 4+: no TCP connect or bind; ABI 6+: no signals to and
  no abstract unix sockets of processes outside its own.
- fallbacks, each logged with what failed: without namespaces, the network is cut by Landlock's TCP rule
  (ABI 4+) or else only Python's socket API refuses (best effort: UDP and raw syscalls remain); leftover
  processes are found through the supervisor (a subreaper) and killed; RLIMIT_NPROC becomes the user's
  process count plus ``process_limit`` (root is exempt from RLIMIT_NPROC); without Landlock, writes outside
  the directory are stopped only by file permissions.

Not enforced: memory across processes (RLIMIT_AS is per process: at most ``process_limit`` x ``memory_mb``),
disk use by many files (each is capped, their number is bounded by the time limit), and anything a kernel
exploit gets past; this is not a VM.

Grading needs the program to reach its end: ``passed`` is exit status 0 after its last line ran, so an early
``exit(0)`` fails.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from ...errors import RecipeError

logger = logging.getLogger(__name__)

OPT_IN = "AURORA_M_ALLOW_CODE_EXECUTION"
SUPERVISOR = Path(__file__).with_name("_supervisor.py")
OUTPUT = "output.txt"  # the program's stdout and stderr, in its directory (_supervisor.OUTPUT)
UID_BASE = 61000  # as root, worker slot i runs programs as uid UID_BASE + i (outside the user namespace)
SUPERVISOR_GRACE_S = 15.0  # beyond a job's timeout, before the supervisor itself is killed
STATUSES = ("passed", "failed", "timeout", "killed", "error")
SYSTEM_READABLE = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/sys/devices/system/cpu",
)


@dataclass
class Job:
    """One program: complete Python source that exits with status 0 if and only if it passes."""

    program: str
    timeout_s: float = 10.0
    memory_mb: int = 1024


@dataclass
class Outcome:
    """``status``: passed | failed (it ran and did not pass) | timeout | killed (by a signal: a limit, a
    crash) | error (the sandbox could not run it: not the program's fault). ``detail``: one line (the
    exception's last line, the signal, the limit). ``seconds``: wall time of the program (with a few
    milliseconds of sandbox setup)."""

    status: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Executor(Protocol):
    """Runs programs; returns one outcome per job, in order."""

    def run(self, jobs: Sequence[Job]) -> list[Outcome]: ...


def code_execution_allowed() -> bool:
    return os.environ.get(OPT_IN, "").strip().lower() in ("1", "true", "yes")


def require_opt_in() -> None:
    """Raise the one-line error a user sees when running model-written code was not allowed explicitly."""
    if not code_execution_allowed():
        raise RecipeError(
            None,
            OPT_IN,
            "code evaluation runs model-written programs on this machine (each in a "
            f"sandbox: aurora_m/evaluation/code/sandbox.py); set {OPT_IN}=1 to allow it",
        )


@dataclass(frozen=True)
class Isolation:
    """What this machine gives the sandbox: ``ns`` "user" (namespaces) or "none"; ``landlock`` ABI (0: none)."""

    ns: str
    landlock: int
    separate_uid: bool

    def describe(self) -> str:
        if self.ns == "user":
            parts = ["user, network, PID and IPC namespaces"]
        else:
            parts = ["no namespaces (best effort: no network namespace, no PID namespace)"]
        parts.append(
            f"uid {UID_BASE}+slot"
            if self.separate_uid
            else f"uid {os.getuid()}"
            + (" (no process limit binds root)" if os.getuid() == 0 and self.ns != "user" else "")
        )
        if self.landlock:
            scope = (
                ["file system"]
                + (["TCP"] if self.landlock >= 4 else [])
                + (["signals, abstract sockets"] if self.landlock >= 6 else [])
            )
            parts.append(f"Landlock ABI {self.landlock} ({', '.join(scope)})")
        else:
            parts.append("no Landlock (writes outside the directory are not prevented)")
        return "; ".join(parts)


def landlock_abi() -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return max(libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1)), 0)
    except (OSError, AttributeError):
        return 0


def _readable_paths() -> list[str]:
    """The Python installation (wherever it is, also in /root or a venv) and the system's libraries."""
    paths = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *site.getsitepackages(),
        *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    }
    return sorted(p for p in paths | set(SYSTEM_READABLE) if p and os.pathsep not in p)


def _site_packages() -> list[str]:
    """Installed packages stay importable (numpy in a completion works), without running ``site``."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p) and os.pathsep not in p))


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


class LocalSandbox:
    """Runs each job in its own confined process on this machine, ``workers`` at a time (0: one per core)."""

    _isolation: Isolation | None = None
    _probe_lock = threading.Lock()

    def __init__(
        self,
        workers: int = 0,
        *,
        output_limit: int = 4 << 20,
        process_limit: int = 64,
        isolation: Isolation | None = None,
    ):
        require_opt_in()  # here too, so an eval stage refuses before hours of generation
        self.workers = workers or (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
        self.output_limit = output_limit
        self.process_limit = process_limit
        self._forced = isolation
        self._readable = os.pathsep.join(_readable_paths())
        self._site = os.pathsep.join(_site_packages())

    def isolation(self) -> Isolation:
        """The strongest isolation this machine runs a program under (probed once per process, logged)."""
        if self._forced is not None:
            return self._forced
        with LocalSandbox._probe_lock:
            if LocalSandbox._isolation is None:
                LocalSandbox._isolation = self._probe()
        return LocalSandbox._isolation

    def _probe(self) -> Isolation:
        abi = landlock_abi()
        root = os.geteuid() == 0
        # strongest first; as root without namespaces, a uid of its own (which needs an interpreter others
        # can read) before root itself, which no process limit binds
        candidates = list(
            dict.fromkeys(
                [
                    Isolation("user", abi, root),
                    Isolation("user", 0, root),
                    Isolation("none", abi, root),
                    Isolation("none", 0, root),
                    Isolation("none", abi, False),
                    Isolation("none", 0, False),
                ]
            )
        )
        probe = Job("import fractions, json\nopen('probe.txt', 'w').write('ok')\n", timeout_s=30)
        failures = []
        server = _Server()
        try:
            for candidate in candidates:
                outcome = self._run_one(server, probe, 0, candidate)
                if outcome.passed:
                    (logger.info if candidate == candidates[0] else logger.warning)(
                        "code sandbox: %s", candidate.describe()
                    )
                    if failures:
                        logger.warning("code sandbox: stronger isolation failed here: %s", "; ".join(failures))
                    return candidate
                failures.append(f"{candidate.describe()}: {outcome.detail}")
        finally:
            server.close()
        raise RecipeError(
            None, "code sandbox", "cannot run a program on this machine (Linux only): " + " | ".join(failures)
        )

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        require_opt_in()
        if not jobs:
            return []
        isolation = self.isolation()
        workers = min(self.workers, len(jobs))
        servers = [_Server() for _ in range(workers)]
        slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(workers):
            slots.put(slot)

        progress = tqdm(total=len(jobs), desc="running programs", unit="program", disable=len(jobs) < 100)

        def one(job: Job) -> Outcome:
            slot = slots.get()
            try:
                return self._run_one(servers[slot], job, slot, isolation)
            finally:
                slots.put(slot)
                progress.update(1)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")
        try:
            futures = [pool.submit(one, job) for job in jobs]
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C: stop now, not after every queued program
            pool.shutdown(wait=False, cancel_futures=True)
            for server in servers:
                server.interrupt()
            raise
        finally:
            pool.shutdown(wait=True)
            for server in servers:
                server.close()
            progress.close()

    def _run_one(self, server: _Server, job: Job, slot: int, isolation: Isolation) -> Outcome:
        workdir = tempfile.mkdtemp(prefix="aurora-m-sandbox-")
        settings = {
            "dir": workdir,
            "timeout": job.timeout_s,
            "memory_mb": job.memory_mb,
            "output_cap": self.output_limit,
            "nproc": self.process_limit,
            "ns": isolation.ns,
            "landlock": int(isolation.landlock > 0),
            "read": self._readable,
            "syspath": self._site,
            "uid": UID_BASE + slot if isolation.separate_uid else 0,
            "env": _environment(),
        }
        try:
            status, seconds, detail = server.run(job.program, settings, job.timeout_s + SUPERVISOR_GRACE_S)
            if status == "failed":
                detail = _output_detail(workdir, self.output_limit) or detail
            elif status == "killed" and (output := _output_detail(workdir, self.output_limit)):
                detail = f"{detail}; {output}"
            return Outcome(status, detail, seconds)
        finally:
            _remove_tree(workdir)
