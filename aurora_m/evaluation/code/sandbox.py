"""Running untrusted (model-written) Python programs: one process per program, confined, in parallel.

``Executor`` is the interface the code suite depends on; ``LocalSandbox`` runs programs on this machine. A
remote executor (a sandbox service at scale, a VM or gVisor per program) replaces it by implementing ``run``.
Running model-written code needs an explicit opt-in: ``AURORA_M_ALLOW_CODE_EXECUTION=1``.

Each worker is a fork server (``_supervisor.py``, started as ``python -I -S``: no site, no user environment,
a fixed minimal environment), so a program starts as a fork of a small warm interpreter, not a new one
(:mod:`.sandbox_server` starts and talks to it; :mod:`.sandbox_isolation` finds what this machine gives).
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
- fallbacks, each logged with what failed: without namespaces, TCP is cut by Landlock's TCP rule (ABI 4+;
  UDP stays open: Landlock has no UDP rule) or else only Python's socket API refuses (``_socket`` and raw
  system calls get through: tests/test_sandbox.py shows both); leftover
  processes are found through the supervisor (a subreaper) and killed; RLIMIT_NPROC becomes the user's
  process count plus ``process_limit`` (root is exempt from RLIMIT_NPROC); without Landlock, writes outside
  the directory are stopped only by file permissions.

The level a run got goes on the record (``isolation_record()``: in ``code.json``, ``results.json`` and the
card, with what the kernel refused of the stronger ones), and a user may require one: ``require(minimum)``
(``code_min_isolation`` in the eval stage, ``--min-isolation`` on ``aurora-m eval code``) refuses to run below
it. Levels (``sandbox_isolation.LEVELS``): ``full`` (namespaces + Landlock), ``namespaces``, ``landlock``,
``none``.

Not enforced: memory across processes (RLIMIT_AS is per process: at most ``process_limit`` x ``memory_mb``),
disk use by many files (each is capped, their number is bounded by the time limit), and anything a kernel
exploit gets past; this is not a VM.

Grading needs the program to reach its end: ``passed`` is exit status 0 after its last line ran, so an early
``exit(0)`` fails.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from tqdm.auto import tqdm

from ...errors import RecipeError
from ...logs import progress_disabled
from .sandbox_isolation import LEVELS, UID_BASE, Isolation, _readable_paths, _site_packages, landlock_abi
from .sandbox_server import SUPERVISOR_GRACE_S, _environment, _output_detail, _remove_tree, _Server

logger = logging.getLogger(__name__)

OPT_IN = "AURORA_M_ALLOW_CODE_EXECUTION"


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


class LocalSandbox:
    """Runs each job in its own confined process on this machine, ``workers`` at a time (0: one per core)."""

    _isolation: Isolation | None = None
    _refused: list[str] = []  # what the kernel refused of the stronger levels, as the probe found
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
                LocalSandbox._isolation, LocalSandbox._refused = self._probe()
        return LocalSandbox._isolation

    def isolation_record(self) -> dict:
        """The isolation programs run under, for the results: level, parts, what the kernel refused."""
        isolation = self.isolation()
        return isolation.record([] if self._forced else LocalSandbox._refused, forced=self._forced is not None)

    def require(self, minimum: str | None, config_file=None, key: str = "code_min_isolation") -> None:
        """Refuse (one line) to run anything when this machine's isolation is below ``minimum`` (a level of
        :data:`~.sandbox_isolation.LEVELS`; None: any)."""
        if not minimum:
            return
        if minimum not in LEVELS:
            raise RecipeError(config_file, key, f"unknown {minimum!r}: expected one of {', '.join(LEVELS)}")
        isolation = self.isolation()
        if not isolation.satisfies(minimum):
            refused = self.isolation_record()["refused"]
            why = f"; the kernel refused: {' | '.join(r[:160] for r in refused)}" if refused else ""
            raise RecipeError(
                config_file,
                key,
                f"requires sandbox isolation {minimum!r} ({' + '.join(sorted(LEVELS[minimum])) or 'limits'}), but "
                f"this machine gives {isolation.level!r} ({isolation.describe()}){why}; nothing was run",
            )

    def _probe(self) -> tuple[Isolation, list[str]]:
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
                    return candidate, failures
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

        progress = tqdm(
            total=len(jobs), desc="running programs", unit="program", disable=len(jobs) < 100 or progress_disabled()
        )

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
