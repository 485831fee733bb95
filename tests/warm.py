"""Run ``aurora-m`` and the stage scripts as separate processes, without paying their imports every time.

A new interpreter spends seconds importing torch, transformers, datasets and trl before it reads its first
argument, and the suite starts a few hundred of them: that was about a third of its CPU time. Here one
interpreter imports them once (a ``multiprocessing`` fork server, one per test process) and forks a child per
command. The child is still a process of its own (pid, exit code, signals, working folder, environment, stdout
and stderr), and it runs the module or script as ``python -m ...`` / ``python script.py`` would (``runpy``,
``__main__``, ``sys.argv``).

What the preloaded libraries read once, at import, cannot change in a forked child: a call whose environment
changes one of those variables (``PYTHONPATH``, ``HF_*``, ``HOME``, ...) gets a fresh interpreter instead, as
does anything that is not ``-m MODULE`` or a ``.py`` script. This module imports nothing heavy itself: the fork
server unpickles ``_child`` from it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = [
    "torch",
    "transformers",
    "transformers.training_args",
    "transformers.trainer",
    "datasets",
    "accelerate",
    "peft",
    "trl",
    "aurora_m.cli",
    "aurora_m.train.pretrain",
    "aurora_m.data.step",
]
# read once when a preloaded library is imported: changing one needs a new interpreter
IMPORT_TIME = re.compile(
    r"(PYTHON\w*|HF_\w+|HUGGINGFACE\w*|TRANSFORMERS\w*|DATASETS\w*|TORCH\w*|OMP_\w+|MKL_\w+|TOKENIZERS\w*"
    r"|HOME|XDG_\w+|TMPDIR|LD_\w+|CUDA\w*|ACCELERATE\w*)"
)


@functools.cache
def _server() -> tuple[multiprocessing.context.BaseContext, dict[str, str]]:
    """The fork server (started on first use) and the environment its libraries were imported under."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context, dict(os.environ)


def forkable(args: list[str], env: dict[str, str]) -> bool:
    runnable = (len(args) >= 2 and args[0] == "-m") or (bool(args) and args[0].endswith(".py"))
    imported_under = _server()[1]
    changed = {k for k in set(env) | set(imported_under) if env.get(k) != imported_under.get(k)}
    return runnable and not any(IMPORT_TIME.fullmatch(k) for k in changed)


def run_python(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], capture_output=True, text=True, ...)``, forked when it can be."""
    if not forkable(args, env):
        return subprocess.run(
            [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
    with tempfile.TemporaryDirectory(prefix="aurora-m-warm-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()
        child = _server()[0].Process(target=_child, args=(list(args), dict(env), str(cwd), str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired([sys.executable, *args], timeout, out.read_bytes(), err.read_bytes())
        read = functools.partial(Path.read_text, encoding="utf-8", errors="replace")
        return subprocess.CompletedProcess([sys.executable, *args], child.exitcode, read(out), read(err))


def run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, text=True, ...)``: forked when ``argv`` runs this Python."""
    if argv and argv[0] == sys.executable:
        return run_python(list(argv[1:]), env=env, cwd=cwd, timeout=timeout)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _child(args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.modules.pop(args[1], None)  # preloaded as a module; it runs again as __main__ (as runpy -m expects)
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(args[0])
        sys.argv = [args[0], *args[1:]]
        sys.path.insert(0, os.path.dirname(script))  # as `python script.py` puts the script's folder first
        runpy.run_path(script, run_name="__main__")
