"""Shared fixtures: offline settings, the README's tiny-run command, one tiny run per session, and log capture."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from warm import run_python

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "aurora-m-tiny"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
os.environ.update(OFFLINE)
# Tiny models on a 2-core machine: torch's intra-op threads cost more than they give (they spin and wait on
# each other, and on the pipeline's own worker processes); one thread per process, inherited by every
# subprocess a test starts, set before torch loads. A machine's own setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The end-to-end tests: `python -m pytest -m "not slow"` leaves them out while developing (CI runs everything)
SLOW_MODULES = {"test_pipeline", "test_resume", "test_launch", "test_faults", "test_redteam", "test_publish"}
# Runs made once per session (a whole pipeline each): under `-n N --dist loadgroup` the tests that read one go to
# one worker, so each run is still made once
SHARED_RUNS = ("tiny_run", "short_run")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Mark the slow tests; under xdist, group the tests that share a session run or a module-scoped fixture (made
    once per worker, so spreading them would make it twice), and start the slow ones first so that the short ones
    fill the end and the workers finish together."""
    xdist = bool(getattr(config.option, "loadgroup", False))  # set on xdist's workers under --dist loadgroup
    for item in items:
        runs = [name for name in SHARED_RUNS if name in item.fixturenames]
        if runs or item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if not xdist:
            continue
        defs = getattr(item, "_fixtureinfo", None)
        defs = defs.name2fixturedefs if defs else {}
        module_scoped = any(defs[name][-1].scope == "module" for name in item.fixturenames if defs.get(name))
        if runs or module_scoped:
            item.add_marker(pytest.mark.xdist_group(runs[0] if runs else item.module.__name__))
    if xdist:
        items.sort(key=_start_order)  # stable: collection order otherwise


# Under xdist a group goes to one worker as a whole: the long ones start first (each the length of a pipeline
# run or more), so that the others, down to single tests, fill both workers up to the end. conftest turns off
# xdist's own reordering (by number of tests, which put a long group of few tests last).
LONG_GROUPS = ("tiny_run", "short_run", "test_resume", "test_rehearse")


def _start_order(item) -> tuple[int, bool]:
    group = item.get_closest_marker("xdist_group")
    name = group.args[0] if group and group.args else None
    rank = LONG_GROUPS.index(name) if name in LONG_GROUPS else len(LONG_GROUPS)
    return rank, item.get_closest_marker("slow") is None


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # the controller schedules in the order _start_order gives
        config.option.loadscopereorder = False


def readme_command(pattern: str) -> str:
    """The part of a README command (between ``&&``) that starts with ``pattern``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        for part in line.split("&&"):
            part = re.sub(r"^(\w+=\S+\s+)+", "", part.strip().rstrip("\\").strip())  # drop VAR=value prefixes
            if part.startswith(pattern):
                return part
    raise AssertionError(f"README has no command starting with {pattern!r}")


def cli(
    *args: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 600, fresh: bool = False
) -> subprocess.CompletedProcess:
    """Run ``aurora-m ARGS`` in a process of its own, as a user would: forked from an interpreter that has the
    libraries imported already (tests/warm.py), or, ``fresh``, the installed console script in a new one."""
    env = {**os.environ, **OFFLINE, **(env or {})}
    if not fresh:
        return run_python(["-m", "aurora_m.cli", *args], env=env, cwd=cwd, timeout=timeout)
    exe = shutil.which("aurora-m") or f"{sys.executable} -m aurora_m.cli"
    return subprocess.run(
        [*shlex.split(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aurora-m-cache")
    os.environ["AURORA_M_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cache_dir) -> Path:
    """Run the README's tiny-pipeline command once, into a temporary run folder."""
    command = readme_command("aurora-m run recipes/aurora-m-tiny")
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    argv = shlex.split(command)
    argv[argv.index("--output-dir") + 1] = str(run_dir)
    # the README's line opts in to running model-written code (in the sandbox) for the code suite
    opt_in = "AURORA_M_ALLOW_CODE_EXECUTION=1"
    assert any(opt_in in line and command in line for line in (ROOT / "README.md").read_text().splitlines())
    env = {"AURORA_M_CACHE": str(cache_dir), opt_in.split("=")[0]: "1"}
    # 2.5 minutes on an idle 2-core machine; the limit only stops a hung run (a loaded machine takes 4x longer)
    result = cli(*argv[1:], env=env, fresh=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


@pytest.fixture()
def recipe_copy(tmp_path) -> Path:
    """A private copy of the tiny recipe, to break or edit."""
    dest = tmp_path / "aurora-m-tiny"
    shutil.copytree(TINY, dest)
    return dest


def edit_yaml(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.search(re.escape(old), text), f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture()
def logs(caplog):
    """Every log line at DEBUG, once: ours (whose propagation depends on whether an earlier test set up
    logging) and the libraries'. The named loggers hand records to the capture directly, not via the root."""
    loggers = [logging.getLogger(name) for name in ("aurora_m", "huggingface_hub", "httpx2", "")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(caplog.handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = lg.name == "root"
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    for lg, (level, propagate) in zip(loggers, saved):
        lg.removeHandler(caplog.handler)
        lg.setLevel(level)
        lg.propagate = propagate
