"""Continual pretraining that survives a cluster: the budget sets the steps, CAT carries CAP's optimizer on,
and a run killed at any point resumes to the very same weights without repeating or skipping a sequence."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from warm import run

from aurora_m.budget import derive_max_steps
from aurora_m.errors import RecipeError
from aurora_m.train.handoff import carry_on_schedule

from conftest import OFFLINE, ROOT

TINY = ROOT / "recipes" / "aurora-m-tiny"
CAP_STEPS, CAT_STEPS, BATCH, SEQ = 40, 16, 8, 128
CAP = [
    "--config",
    str(TINY / "cap.yaml"),
    "--max_steps",
    str(CAP_STEPS),
    "--train_tokens",
    str(CAP_STEPS * BATCH * SEQ),
    "--save_steps",
    "5",
    "--save_total_limit",
    "2",
    "--logging_steps",
    "5",
]


def cat_args(cap_dir: Path) -> list[str]:
    return [
        "--config",
        str(TINY / "cat.yaml"),
        "--model_name_or_path",
        str(cap_dir / "model"),
        "--max_steps",
        str(CAT_STEPS),
        "--train_tokens",
        str(CAT_STEPS * BATCH * SEQ),
        "--save_steps",
        "4",
        "--save_total_limit",
        "2",
        "--logging_steps",
        "4",
    ]


def drive(args: list[str], out: Path, ledger: Path, kill: str | None = None, nproc: int = 1, sig: str = "kill"):
    launcher = (
        [sys.executable]
        if nproc == 1
        else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    )
    argv = [
        *launcher,
        str(ROOT / "tests" / "train_driver.py"),
        "--ledger",
        str(ledger),
        *(["--kill", kill, "--signal", sig] if kill else []),
        "--",
        *args,
        "--output_dir",
        str(out),
    ]
    return run(argv, cwd=ROOT, timeout=600, env={**os.environ, **OFFLINE})


def lineage(ledger: Path) -> dict[int, list[str]]:
    """Step -> the sequences that made it into the final weights: a step redone after a kill counts once,
    as its last run trained it (the ledger is appended in run order)."""
    steps: dict[int, dict[int, list[str]]] = {}
    for line in ledger.read_text().splitlines():
        entry = json.loads(line)
        steps.setdefault(entry["step"], {})[entry["rank"]] = entry["batch"]
    return {step: [h for rank in sorted(by_rank) for h in by_rank[rank]] for step, by_rank in steps.items()}


def stream_hashes(data: Path, count: int) -> list[str]:
    """The first ``count`` sequences of the training stream, read straight from the data step's files."""
    from aurora_m.data.stream import open_stream
    from aurora_m.layout import DatasetDir

    stream = open_stream(DatasetDir(data))
    return [hashlib.sha1(stream[p]["input_ids"].tobytes()).hexdigest()[:16] for p in range(count)]


def weights(model_dir: Path) -> bytes:
    return (model_dir / "model.safetensors").read_bytes()


def kill_and_resume(args, out: Path, ledger: Path, kills: list[str]) -> list[str]:
    logs = []
    for kill in kills:
        killed = drive(args, out, ledger, kill)
        assert killed.returncode == -9, (kill, killed.stderr[-2000:])
        logs.append(killed.stderr)
    finished = drive(args, out, ledger)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return [*logs, finished.stderr]


@pytest.fixture(scope="module")
def cap_uninterrupted(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("cap-straight")
    result = drive(CAP, root / "cap", root / "ledger.jsonl")
    assert result.returncode == 0, result.stderr[-3000:]
    return root


# ----------------------------------------------------------------------------- kill, resume, compare
def test_killed_cap_resumes_to_bitwise_identical_weights_without_repeating_data(cap_uninterrupted, tmp_path):
    straight = cap_uninterrupted
    # mid-step between checkpoints, inside a checkpoint's save, right after a complete checkpoint
    logs = kill_and_resume(
        CAP, tmp_path / "cap", tmp_path / "ledger.jsonl", ["step_end:7", "mid_save:15", "after_save:25", "step_end:33"]
    )
    assert weights(tmp_path / "cap" / "model") == weights(straight / "cap" / "model")
    assert "resuming from" in logs[1] and "checkpoint-5" in logs[1]
    assert "set aside 1 partial checkpoint" in logs[2]  # the save cut at 15 is never resumed from
    assert "checkpoint-10" in logs[2].split("resuming from")[-1].splitlines()[0]

    resumed, expected = lineage(tmp_path / "ledger.jsonl"), lineage(straight / "ledger.jsonl")
    assert sorted(resumed) == list(range(1, CAP_STEPS + 1))  # every step once in the final lineage
    assert resumed == expected  # each step trained the same sequences as the uninterrupted run
    trained = [h for step in sorted(expected) for h in expected[step]]
    # and those are the stream's positions 0..N-1 in order: nothing repeated, nothing skipped
    assert trained == stream_hashes(straight / "cap" / "data", CAP_STEPS * BATCH)


def test_sigterm_mid_step_or_mid_save_ends_in_one_line_and_resumes_to_identical_weights(cap_uninterrupted, tmp_path):
    """SIGTERM (Slurm's time limit, ``timeout``, ``docker stop``) inside training: the run ends itself in one line
    with 143, leaves no lock or half checkpoint that blocks the next run, and the next run resumes."""
    out, ledger = tmp_path / "cap", tmp_path / "ledger.jsonl"
    for kill in ("step_end:7", "mid_save:15"):
        ended = drive(CAP, out, ledger, kill, sig="term")
        errors = [line for line in ended.stderr.splitlines() if "error:" in line]  # on a line of its own
        assert ended.returncode == 143, (kill, ended.stderr[-2000:])
        expected = (
            "train_driver.py: error: terminated (SIGTERM): run the same command again to resume "
            "(complete steps and checkpoints are kept)"
        )
        assert errors == [expected] and "Traceback" not in ended.stderr, (kill, ended.stderr[-2000:])
    finished = drive(CAP, out, ledger)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "set aside 1 partial checkpoint" in finished.stderr  # the save cut at 15
    assert "checkpoint-10" in finished.stderr.split("resuming from")[-1].splitlines()[0]
    assert weights(out / "model") == weights(cap_uninterrupted / "cap" / "model")
    assert lineage(ledger) == lineage(cap_uninterrupted / "ledger.jsonl")


def test_killed_cat_with_full_state_resumes_to_identical_weights(cap_uninterrupted, tmp_path):
    cap = cap_uninterrupted / "cap"
    straight = drive(cat_args(cap), tmp_path / "straight", tmp_path / "straight.jsonl")
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert f"schedule carries on from step {CAP_STEPS}" in straight.stderr
    kill_and_resume(
        cat_args(cap), tmp_path / "cat", tmp_path / "ledger.jsonl", ["step_end:2", "mid_save:8", "after_save:12"]
    )
    assert weights(tmp_path / "cat" / "model") == weights(tmp_path / "straight" / "model")
    resumed = lineage(tmp_path / "ledger.jsonl")
    assert sorted(resumed) == list(range(1, CAT_STEPS + 1))
    assert resumed == lineage(tmp_path / "straight.jsonl")

    # full_state carried CAP's AdamW on: its per-parameter step counts continue from CAP's last step
    state = torch.load(tmp_path / "cat" / f"checkpoint-{CAT_STEPS}" / "optimizer.pt", weights_only=True)
    assert {int(s["step"]) for s in state["state"].values()} == {CAP_STEPS + CAT_STEPS}
    history = json.loads((tmp_path / "cat" / "log_history.json").read_text())
    assert {e["learning_rate"] for e in history if "learning_rate" in e} == {3.0e-4}  # the recipe's floor


def test_init_from_weights_starts_a_fresh_optimizer(cap_uninterrupted, tmp_path):
    result = drive(
        [
            *cat_args(cap_uninterrupted / "cap"),
            "--init_from",
            "weights",
            "--max_steps",
            "4",
            "--train_tokens",
            str(4 * BATCH * SEQ),
            "--save_steps",
            "4",
        ],
        tmp_path / "cat",
        tmp_path / "l",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "cat" / "checkpoint-4" / "optimizer.pt", weights_only=True)
    assert {int(s["step"]) for s in state["state"].values()} == {4}


def test_full_state_needs_the_upstreams_last_checkpoint(cap_uninterrupted, tmp_path):
    # an upstream whose newest checkpoint is not its last step cannot hand its optimizer on
    cap = tmp_path / "cap"
    (cap / "model").mkdir(parents=True)
    for f in (cap_uninterrupted / "cap" / "model").iterdir():
        (cap / "model" / f.name).write_bytes(f.read_bytes())
    early = cap / "checkpoint-5"
    early.mkdir()
    (early / "trainer_state.json").write_text(json.dumps({"global_step": 5, "max_steps": CAP_STEPS}))
    result = drive(cat_args(cap), tmp_path / "cat", tmp_path / "l")
    assert result.returncode == 2
    assert "init_from: checkpoint-5 is step 5 of 40" in result.stderr.strip().splitlines()[-1]


def test_resume_with_another_global_batch_is_refused(cap_uninterrupted, tmp_path):
    out = tmp_path / "cap"
    killed = drive(CAP, out, tmp_path / "l", "after_save:5")
    assert killed.returncode == -9
    other = drive([*CAP, "--per_device_train_batch_size", "4", "--max_steps", str(2 * CAP_STEPS)], out, tmp_path / "l")
    assert other.returncode == 2, other.stderr[-2000:]
    line = other.stderr.strip().splitlines()[-1]
    assert "checkpoint-5/trainer_state.json: stream:" in line and "8 sequences" in line and "4 of 128" in line


def test_stated_max_steps_must_agree_with_the_budget(tmp_path):
    result = drive([*CAP, "--max_steps", "30"], tmp_path / "cap", tmp_path / "l")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "max_steps: 30 disagrees with the token budget" in line and "= 40 steps" in line


# ----------------------------------------------------------------------------- two ranks
def test_two_ranks_see_different_data_and_together_the_mixture(tmp_path, cache_dir):
    steps = 6
    args = [
        "--config",
        str(TINY / "cap.yaml"),
        "--train_tokens",
        str(steps * 2 * BATCH * SEQ),
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
    ]  # the budget over 2 ranks: 6 steps
    result = drive([*args, "--max_steps", str(steps)], tmp_path / "cap", tmp_path / "ledger.jsonl", nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 ranks" in result.stderr
    by_rank: dict[int, list[str]] = {}
    for line in (tmp_path / "ledger.jsonl").read_text().splitlines():
        entry = json.loads(line)
        by_rank.setdefault(entry["rank"], []).extend(entry["batch"])
    assert sorted(by_rank) == [0, 1] and len(by_rank[0]) == len(by_rank[1]) == steps * BATCH
    data = tmp_path / "cap" / "data"
    stream = stream_hashes(data, steps * 2 * BATCH)
    # global step s is positions [16 s, 16 s + 16): rank 0 the first 8, rank 1 the next 8
    for rank in (0, 1):
        expect = [h for s in range(steps) for h in stream[16 * s + 8 * rank : 16 * s + 8 * rank + 8]]
        assert by_rank[rank] == expect
    index = np.load(data / "index.npy", mmap_mode="r")[: steps * 2 * BATCH]
    assert len(set(index[:, 0].tolist())) == 6  # together the ranks trained on all six sources


# ----------------------------------------------------------------------------- arithmetic, schedules
def _args(per_device=8, accumulation=1, world=1, max_steps=-1):
    return SimpleNamespace(
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        world_size=world,
        max_steps=max_steps,
    )


def test_max_steps_is_the_budget_over_what_one_step_trains():
    args = _args(per_device=4, accumulation=8, world=64)
    budget = derive_max_steps(args, 377_487_360_000, 2048, "cap.yaml")
    assert args.max_steps == budget.steps == 90_000
    assert "2048 tokens = 4,194,304 tokens/step) = 90,000 steps" in budget.arithmetic()  # the logged line
    args = _args(per_device=4, accumulation=8, world=64)
    budget = derive_max_steps(args, 58_000_000_000, 2048)
    assert args.max_steps == 13_828  # CAT: ~13.9k steps
    assert "the last 1,164,288 tokens (less than one step) are not trained" in budget.arithmetic()
    args = _args(per_device=4, accumulation=8, world=128)  # twice the GPUs: half the steps, same tokens
    assert derive_max_steps(args, 377_487_360_000, 2048).steps == 45_000


def test_max_steps_disagreeing_or_a_budget_under_one_step_is_refused():
    with pytest.raises(RecipeError, match=r"cap.yaml: max_steps: 100 disagrees .* = 240 steps"):
        derive_max_steps(_args(max_steps=100), 245_760, 128, "cap.yaml")
    derive_max_steps(_args(max_steps=240), 245_760, 128)  # agreeing is fine
    with pytest.raises(RecipeError, match="train_tokens: 1,000 is less than one optimizer step of 1,024"):
        derive_max_steps(_args(), 1000, 128, "cap.yaml")


def test_a_stated_max_steps_is_checked_against_the_launch_at_validate(monkeypatch, tmp_path):
    """Before any data step: `aurora-m validate` / the pipeline (one process) and a script under a launcher
    (WORLD_SIZE, as torchrun sets it) check the YAML's max_steps with the trainer's arithmetic and line."""
    from aurora_m.overrides import overrides_to_dict
    from aurora_m.stage_checks import check_stage_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("AURORA_M_LAUNCH_RANKS", raising=False)
    check_stage_config(TINY / "cap.yaml", "pretrain")  # 240 steps of 8 x 128 on one process: agrees
    with pytest.raises(RecipeError, match=r"command line: --max_steps: 30 disagrees .* x 1 ranks .* = 240 steps"):
        check_stage_config(TINY / "cap.yaml", "pretrain", overrides=overrides_to_dict(["--max_steps", "30"]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match=r"cap.yaml: max_steps: 240 disagrees .* x 2 ranks .* = 120 steps\. Delete"):
        check_stage_config(TINY / "cap.yaml", "pretrain")
    check_stage_config(TINY / "cap.yaml", "pretrain", overrides=overrides_to_dict(["--max_steps", "120"]))
    monkeypatch.delenv("WORLD_SIZE")  # launch.slurm's data step, before its 2 nodes x 4 GPUs train
    monkeypatch.setenv("AURORA_M_LAUNCH_RANKS", "8")
    with pytest.raises(RecipeError, match=r"x 8 ranks .* = 30 steps"):
        check_stage_config(TINY / "cap.yaml", "pretrain")


def _lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer(lr=1.0):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize(
    "kind,kwargs",
    [("cosine_with_min_lr", {"min_lr": 0.1}), ("warmup_stable_decay", {"num_decay_steps": 60, "min_lr_ratio": 0.1})],
)
def test_carried_on_schedule_continues_where_the_upstream_stood(kind, kwargs):
    from transformers import get_scheduler

    whole = _lrs(
        get_scheduler(
            kind, _optimizer(), num_warmup_steps=10, num_training_steps=300, scheduler_specific_kwargs=kwargs
        ),
        300,
    )
    carried = carry_on_schedule(
        get_scheduler(
            kind, _optimizer(), num_warmup_steps=10, num_training_steps=300, scheduler_specific_kwargs=kwargs
        ),
        240,
    )
    assert _lrs(carried, 60) == pytest.approx(whole[240:])  # no re-warm, no jump
    if kind == "warmup_stable_decay":  # CAP held the peak, CAT decays it to the floor
        assert whole[239] == 1.0 and whole[-1] == pytest.approx(0.1, abs=0.02)


def test_carried_on_schedule_survives_a_checkpoint():
    from transformers import get_scheduler

    def make():
        return carry_on_schedule(get_scheduler("cosine", _optimizer(), num_warmup_steps=0, num_training_steps=100), 50)

    first = make()
    _lrs(first, 10)
    second = make()
    second.load_state_dict(first.state_dict())
    assert second.get_last_lr() == first.get_last_lr() and _lrs(second, 5) == _lrs(first, 5)


# ----------------------------------------------------------------------------- what a hostile user found
def _copy_cap(src: Path, dst: Path, checkpoint: bool = True) -> Path:
    import shutil

    shutil.copytree(src / "model", dst / "model")
    if checkpoint:
        shutil.copytree(src / f"checkpoint-{CAP_STEPS}", dst / f"checkpoint-{CAP_STEPS}")
    return dst


def test_full_state_refuses_the_optimizer_of_another_model_size(cap_uninterrupted, tmp_path):
    cap = _copy_cap(cap_uninterrupted / "cap", tmp_path / "cap")
    optimizer = cap / f"checkpoint-{CAP_STEPS}" / "optimizer.pt"
    state = torch.load(optimizer, weights_only=True)
    first = next(iter(state["state"]))
    state["state"][first] = {k: (torch.cat([v, v]) if v.dim() else v) for k, v in state["state"][first].items()}
    torch.save(state, optimizer)  # the moments of a wider model: fused AdamW would train on them regardless
    result = drive(cat_args(cap), tmp_path / "cat", tmp_path / "l")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the optimizer state of another model size" in result.stderr.strip().splitlines()[-1]
    optimizer.write_bytes(b"\x80\x02garbage" * 100)
    result = drive(cat_args(cap), tmp_path / "cat", tmp_path / "l")
    assert result.returncode == 2 and "is not a readable optimizer state" in result.stderr.strip().splitlines()[-1]


def test_a_resumed_cat_needs_no_upstream_checkpoint(cap_uninterrupted, tmp_path):
    import shutil

    cap = _copy_cap(cap_uninterrupted / "cap", tmp_path / "cap")
    killed = drive(cat_args(cap), tmp_path / "cat", tmp_path / "l", "after_save:4")
    assert killed.returncode == -9
    shutil.rmtree(cap / f"checkpoint-{CAP_STEPS}")  # freed to save disk: the resume carries on from what it recorded
    resumed = drive(cat_args(cap), tmp_path / "cat", tmp_path / "l")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr and (tmp_path / "cat" / "model" / "model.safetensors").is_file()


def test_a_second_run_into_the_same_stage_folder_stops_at_once(cap_uninterrupted, tmp_path):
    import time

    out = tmp_path / "cap"
    argv = [sys.executable, str(ROOT / "tests" / "train_driver.py"), "--", *CAP, "--output_dir", str(out)]
    first = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **OFFLINE}
    )
    try:
        lock, data = out / ".train.lock", out / "data" / "mixture.json"  # locked, and past the data step
        deadline = time.time() + 300
        while not (lock.is_file() and lock.read_text().strip() and data.is_file()) and time.time() < deadline:
            time.sleep(0.5)
        assert first.poll() is None, "the first run ended before it trained"
        first.send_signal(signal.SIGSTOP)  # held while the second one looks (it cannot finish meanwhile)
        second = drive(CAP, out, tmp_path / "l")
        assert second.returncode == 2
        assert "one run per folder" in second.stderr.strip().splitlines()[-1]
    finally:
        first.kill()
        first.wait()


def test_humaneval_pass1_probe_runs_in_the_sandbox_and_needs_the_opt_in(tmp_path, cache_dir):
    args = [
        *CAP,
        "--max_steps",
        "10",
        "--train_tokens",
        str(10 * BATCH * SEQ),
        "--eval_steps",
        "10",
        "--save_strategy",
        "no",
        "--forgetting_probes",
        "code_ppl",
        "humaneval_pass1",
    ]
    env = {**os.environ, **OFFLINE}
    env.pop("AURORA_M_ALLOW_CODE_EXECUTION", None)
    refused = run(
        [sys.executable, "scripts/pretrain.py", *args, "--output_dir", str(tmp_path / "a")],
        cwd=ROOT,
        timeout=600,
        env=env,
    )
    assert refused.returncode == 2 and "AURORA_M_ALLOW_CODE_EXECUTION=1" in refused.stderr.strip().splitlines()[-1]
    ran = run(
        [sys.executable, "scripts/pretrain.py", *args, "--output_dir", str(tmp_path / "b")],
        cwd=ROOT,
        timeout=600,
        env={**env, "AURORA_M_ALLOW_CODE_EXECUTION": "1"},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    history = json.loads((tmp_path / "b" / "log_history.json").read_text())
    probes = [e for e in history if "forgetting/humaneval_pass1" in e]
    from aurora_m.train.monitor import HUMANEVAL_PROBE_PROBLEMS

    assert [e["step"] for e in probes] == [0, 10]
    for probe in probes:  # k of the probe's problems passed
        passed = probe["forgetting/humaneval_pass1"] * HUMANEVAL_PROBE_PROBLEMS
        assert passed == pytest.approx(round(passed)) and 0 <= round(passed) <= HUMANEVAL_PROBE_PROBLEMS
