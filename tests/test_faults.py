"""Fault injection on a short tiny recipe: kills and Ctrl-C mid-step, partial checkpoints, a full disk,
concurrent runs, edits with checkpoints present, bad bytes, publishing into folders that exist, secrets.

Each case ends in one of three ways: the run converges, re-runs what changed, or refuses with one
line (exit 2; 130 for Ctrl-C). None deletes what it did not write or serves stale results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from warm import run_python

from aurora_m.cli import main
from aurora_m.errors import RecipeError
from aurora_m.layout import RunLayout

from conftest import OFFLINE, ROOT, TINY

# 24 CAP steps saving every 8, 8 CAT steps, one SFT epoch: the whole pipeline in a few seconds of training
SHORT = {
    "cap.yaml": {"max_steps": 24, "train_tokens": 24576, "save_steps": 8, "save_total_limit": 2},
    "cat.yaml": {"max_steps": 8, "train_tokens": 8192, "save_steps": 8},
    "sft.yaml": {"num_train_epochs": 1},
    "eval.yaml": {"suites": ["perplexity"]},
}  # the other suites have their own tests; these are about runs


def edit(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def copy_recipe(dest: Path, **files) -> Path:
    shutil.copytree(TINY, dest)
    for name, changes in {**SHORT, **files}.items():
        edit(dest / name, **changes)
    return dest


@pytest.fixture(scope="session")
def short_run(tmp_path_factory, cache_dir) -> tuple[Path, Path]:
    """The whole short pipeline, once; tests copy it."""
    base = tmp_path_factory.mktemp("short")
    recipe = copy_recipe(base / "recipe")
    assert main(["run", str(recipe), "--output-dir", str(base / "run")]) == 0
    return recipe, base / "run"


@pytest.fixture()
def short(short_run, tmp_path) -> tuple[Path, Path]:
    recipe, run = short_run
    shutil.copytree(recipe, tmp_path / "recipe")
    shutil.copytree(run, tmp_path / "run", symlinks=True)
    return tmp_path / "recipe", tmp_path / "run"


def aurora(*args, timeout=600) -> subprocess.CompletedProcess:
    return run_python(
        ["-m", "aurora_m.cli", *map(str, args)], cwd=ROOT, timeout=timeout, env={**os.environ, **OFFLINE}
    )


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("aurora-m: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def markers(run: Path) -> dict:
    return {p.relative_to(run).as_posix(): p.stat().st_mtime_ns for p in run.glob("*/.*.done")}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aurora_m.cli", *map(str, args)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **OFFLINE},
        start_new_session=True,
    )


# ---------------------------------------------------------------------------------------------- kills and Ctrl-C
def test_sigkill_mid_cap_resumes_to_the_same_weights_and_a_second_run_is_refused_meanwhile(short_run, tmp_path):
    from safetensors.torch import load_file

    recipe = copy_recipe(tmp_path / "recipe")  # the short run's configuration: its weights are the reference
    run = tmp_path / "run"
    proc = start("run", recipe, "--output-dir", run, "--stages", "cap", "--save_total_limit", "1")
    wait_for(run / "cap" / "checkpoint-8" / "trainer_state.json", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "cap" / "model").exists() and not (run / "cap" / ".train.done").exists()
    resumed = aurora("run", recipe, "--output-dir", run, "--stages", "cap", "--save_total_limit", "1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-" in resumed.stderr
    reference = short_run[1] / "cap" / "model" / "model.safetensors"
    a, b = load_file(run / "cap" / "model" / "model.safetensors"), load_file(reference)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_two_runs_on_one_folder_the_second_is_refused_naming_the_first(tmp_path, cache_dir):
    recipe = copy_recipe(tmp_path / "recipe")
    run = tmp_path / "run"
    proc = start("run", recipe, "--output-dir", run, "--stages", "cap")
    wait_for(run / "cap" / "data" / "mixture.json", proc)
    os.killpg(proc.pid, signal.SIGSTOP)  # held mid-run: it cannot finish before the second one looks
    try:
        second = aurora("run", recipe, "--output-dir", run, "--stages", "cap")
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert second.returncode == 2 and f"in use by process {proc.pid}" in error_line(second.stderr)
    assert proc.wait(timeout=300) == 0, proc.communicate()[1][-3000:]


def test_ctrl_c_exits_130_with_one_line_and_the_next_run_resumes(tmp_path, cache_dir):
    recipe = copy_recipe(tmp_path / "recipe")
    run = tmp_path / "run"
    proc = start("run", recipe, "--output-dir", run, "--stages", "cap")
    wait_for(run / "cap" / "checkpoint-8" / "trainer_state.json", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted: run the same command again to resume" in error_line(stderr)
    assert RunLayout(run).lock.read_text() == ""  # released: nothing for the next run to take over
    again = aurora("run", recipe, "--output-dir", run, "--stages", "cap")
    assert again.returncode == 0 and "resuming from" in again.stderr, again.stderr[-3000:]


def test_a_partial_checkpoint_is_set_aside_and_the_newest_complete_one_resumed(short):
    recipe, run = short
    # a kill (or a full disk) while checkpoint-32 was being written: weights half there, no trainer state
    partial = run / "cap" / "checkpoint-32"
    shutil.copytree(run / "cap" / "checkpoint-24", partial)
    (partial / "trainer_state.json").unlink()
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    (run / "cap" / ".train.done").unlink()
    edit(recipe / "cap.yaml", max_steps=40, train_tokens=40960)  # so there is training left to do ...
    result = aurora("run", recipe, "--output-dir", run, "--stages", "cap", "--resume", "cap")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "set aside 1 partial checkpoint(s) (checkpoint-32)" in result.stderr
    assert "resuming from" in result.stderr and "checkpoint-24" in result.stderr
    aside = list((run / "cap").glob("set-aside-partial-*/checkpoint-32"))
    assert len(aside) == 1  # moved, never deleted
    history = json.loads((run / "cap" / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e][-1] == 40


def test_a_full_disk_while_saving_says_so_and_the_next_run_recovers(short, monkeypatch, capsys):
    import errno

    import torch

    recipe, run = short
    edit(recipe / "cap.yaml", max_steps=32, train_tokens=32768)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # the optimizer state of checkpoint-32 does not fit
        if "checkpoint-32" in str(f):
            Path(f).write_bytes(b"\0" * 10)  # a file cut short, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    code = main(["run", str(recipe), "--output-dir", str(run), "--stages", "cap", "--resume", "cap"])
    err = capsys.readouterr().err
    assert code == 2
    line = next(line for line in err.splitlines() if line.startswith("aurora-m: error:"))
    assert "no space left on device while writing" in line and "checkpoint-32" in line
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["run", str(recipe), "--output-dir", str(run), "--stages", "cap", "--resume", "cap"]) == 0
    assert list((run / "cap").glob("set-aside-partial-*/checkpoint-32"))


# ---------------------------------------------------------------------------------------------- edits and checkpoints
def test_a_result_changing_edit_stops_naming_it_and_keeps_the_checkpoints(short):
    recipe, run = short
    checkpoints = sorted(p.name for p in (run / "cap").glob("checkpoint-*"))
    before = markers(run)
    edit(recipe / "cap.yaml", learning_rate=2.0e-3)
    result = aurora("run", recipe, "--output-dir", run)
    line = error_line(result.stderr)
    assert result.returncode == 2
    assert "cap: learning_rate 0.003 -> 0.002 since checkpoint-24" in line
    assert "--restart cap" in line and "--resume cap" in line
    assert sorted(p.name for p in (run / "cap").glob("checkpoint-*")) == checkpoints  # nothing deleted
    assert markers(run) == before  # nothing ran
    restarted = aurora("run", recipe, "--output-dir", run, "--stages", "cap", "--restart", "cap")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    aside = list((run / "cap").glob("set-aside-restart-*"))
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == checkpoints
    history = json.loads((run / "cap" / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e][0] == 1  # from the start, not resumed
    assert next(e for e in history if "loss" in e)["learning_rate"] < 2.0e-3  # warmup towards the new peak


def test_resume_continues_from_the_checkpoints_with_the_new_configuration(short):
    recipe, run = short
    edit(recipe / "cap.yaml", max_steps=32, train_tokens=32768)
    stopped = aurora("run", recipe, "--output-dir", run, "--stages", "cap")
    assert stopped.returncode == 2 and "max_steps 24 -> 32" in error_line(stopped.stderr)
    resumed = aurora("run", recipe, "--output-dir", run, "--stages", "cap", "--resume", "cap")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((run / "cap" / "log_history.json").read_text())
    steps = [e["step"] for e in history if "loss" in e]
    assert steps[0] == 1 and steps[-1] == 32 and len(steps) == 32  # 24 kept + 8 new, none repeated


def test_editing_a_data_file_reruns_nothing_silently(short):
    recipe, run = short
    with open(recipe / "data" / "en.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "A new English document about rivers and lakes. " * 20}) + "\n")
    result = aurora("run", recipe, "--output-dir", run)
    assert result.returncode == 2
    assert "cap: " in error_line(result.stderr) and "since checkpoint-24" in error_line(result.stderr)
    assert "training data changed (mixture[0] data/en.jsonl: file contents changed," in error_line(result.stderr)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stages"][0]["status"] != "completed"  # the old CAP is not reported as current


def test_edits_that_cannot_change_the_result_keep_every_step_complete(short):
    recipe, run = short
    before = markers(run)
    edit(
        recipe / "cap.yaml",
        logging_steps=5,
        save_steps=4,
        report_to="none",
        dataloader_num_workers=1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )  # same 8 sequences per step
    result = aurora("run", recipe, "--output-dir", run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to run" in result.stderr
    assert markers(run) == before


# ---------------------------------------------------------------------------------------------- publishing
def test_publish_never_touches_a_folder_that_is_not_an_export(short, tmp_path):
    _, run = short
    mine = tmp_path / "my-experiments"
    (mine / "exp1").mkdir(parents=True)
    (mine / "exp1" / "weights.bin").write_bytes(b"precious")
    result = aurora("publish", run, "--variant", "aurora-m-tiny-base", "--out", mine)
    assert result.returncode == 2 and "was not written by aurora-m" in error_line(result.stderr)
    assert (mine / "exp1" / "weights.bin").read_bytes() == b"precious"
    assert sorted(p.name for p in mine.rglob("*")) == ["exp1", "weights.bin"]
    inside = aurora(
        "publish",
        run,
        "--variant",
        "aurora-m-tiny-base",
        "--out",
        run / "publish" / "aurora-m-tiny-redteamed",
        "--overwrite",
    )
    assert inside.returncode == 2 and "is inside the run folder" in error_line(inside.stderr)


def _exported(out: Path) -> str:
    """The variant an export folder holds, by its card's title (the short run's card has no model-index: its
    only results are perplexities on local held-out text, which have no Hub dataset id)."""
    return (out / "README.md").read_text().split("\n# ", 1)[1].split("\n", 1)[0].rsplit("/", 1)[-1].strip()


def test_publish_replaces_its_own_export_only_with_overwrite(short, tmp_path):
    _, run = short
    out = tmp_path / "export"
    assert aurora("publish", run, "--variant", "aurora-m-tiny-base", "--out", out).returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # the user's umask, not mkdtemp's 0700
    for weights in (out / "model.safetensors", run / "cap" / "model" / "model.safetensors"):
        assert stat.S_IMODE(weights.stat().st_mode) & 0o444 == 0o444 & ~umask, weights  # not 0600
    again = aurora("publish", run, "--variant", "aurora-m-tiny-redteamed", "--out", out)
    assert again.returncode == 2 and "--overwrite" in error_line(again.stderr)
    assert _exported(out) == "aurora-m-tiny-base"
    (out / "NOTES.md").write_text("my notes")  # a file of the user's inside our export: never replaced away
    refused = aurora("publish", run, "--variant", "aurora-m-tiny-redteamed", "--out", out, "--overwrite")
    assert refused.returncode == 2 and "NOTES.md" in error_line(refused.stderr)
    assert (out / "NOTES.md").read_text() == "my notes"
    (out / "NOTES.md").unlink()
    replaced = aurora("publish", run, "--variant", "aurora-m-tiny-redteamed", "--out", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert _exported(out) == "aurora-m-tiny-redteamed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old copy left


def test_a_failed_export_leaves_nothing_that_looks_complete(short, tmp_path, monkeypatch, capsys):
    import aurora_m.hub.export as export

    _, run = short
    out = tmp_path / "export"
    assert main(["publish", str(run), "--variant", "aurora-m-tiny-base", "--out", str(out)]) == 0
    old_card = (out / "README.md").read_text()

    def broken_card(*args, **kwargs):
        raise RecipeError(None, None, "card template failed")

    monkeypatch.setattr(export, "build_card", broken_card)
    code = main(["publish", str(run), "--variant", "aurora-m-tiny-redteamed", "--out", str(out), "--overwrite"])
    assert code == 2 and "card template failed" in capsys.readouterr().err
    assert (out / "README.md").read_text() == old_card  # the old export is intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_publish_refuses_a_variant_whose_evaluation_is_older_than_its_weights(short, tmp_path):
    recipe, run = short
    edit(recipe / "cap.yaml", learning_rate=2.0e-3)
    retrained = aurora("train", recipe, "--stage", "cap", "--output-dir", run, "--restart", "cap")
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    result = aurora("publish", run, "--variant", "aurora-m-tiny-base", "--out", tmp_path / "export")
    line = error_line(result.stderr)
    assert result.returncode == 2 and "not published" in line and "eval/eval ran on an older cap/train" in line
    assert not (tmp_path / "export").exists()
    old_export = (run / "publish" / "aurora-m-tiny-base" / "model.safetensors").read_bytes()
    only_publish = aurora("run", recipe, "--output-dir", run, "--stages", "publish")  # its own config is unchanged
    assert only_publish.returncode == 2 and "which is stale" in error_line(only_publish.stderr)
    stages = {s["name"]: s["status"] for s in json.loads((run / "summary.json").read_text())["stages"]}
    assert stages == {
        "cap": "completed",
        "cat": "stale",
        "sft": "stale",
        "instruct": "stale",
        "eval": "stale",
        "publish": "stale",
    }
    assert (run / "publish" / "aurora-m-tiny-base" / "model.safetensors").read_bytes() == old_export
    downstream = aurora("run", recipe, "--output-dir", run)
    assert downstream.returncode == 2 and "cat: its input 'cap' changed since checkpoint-8" in error_line(
        downstream.stderr
    )
    cascaded = aurora("run", recipe, "--output-dir", run, "--restart", "cat")
    assert cascaded.returncode == 0, cascaded.stderr[-3000:]
    assert list((run / "cat").glob("set-aside-restart-*/checkpoint-8"))
    fresh = aurora("publish", run, "--variant", "aurora-m-tiny-base", "--out", tmp_path / "export")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    exported = (tmp_path / "export" / "model.safetensors").read_bytes()
    assert exported == (run / "cap" / "model" / "model.safetensors").read_bytes()


def test_a_moved_run_folder_still_publishes_every_variant(tiny_run, tmp_path):
    moved = tmp_path / "moved" / "run"
    shutil.copytree(tiny_run, moved)
    for variant in ("aurora-m-tiny-base", "aurora-m-tiny-redteamed", "aurora-m-tiny-safety-sft"):
        out = tmp_path / "exports" / variant
        result = aurora("publish", moved, "--variant", variant, "--out", out)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (out / "model.safetensors").is_file() and (out / "assets" / "perplexity.png").is_file()
        for path in out.rglob("*"):  # what a push uploads says nothing of this machine's folders
            if path.is_file():
                data = path.read_bytes()
                assert str(tiny_run).encode() not in data and str(moved).encode() not in data, path


# ---------------------------------------------------------------------------------------------- bad input, secrets
@pytest.mark.parametrize(
    "content,words",
    [
        (b'{"text": "fine"}\n{"text": broken}\n', ["en.jsonl", "line 2", "JSON"]),
        (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', ["en.jsonl", "line 2", "UTF-8"]),
        (b"", ["en.jsonl", "empty"]),
    ],
    ids=["bad-json", "bad-utf8", "empty"],
)
def test_bad_bytes_in_a_data_file_end_in_one_line(tmp_path, cache_dir, content, words):
    recipe = copy_recipe(tmp_path / "recipe")
    (recipe / "data" / "en.jsonl").write_bytes(content)  # the tokenizer trains on it too: it must say so first
    result = aurora("run", recipe, "--output-dir", tmp_path / "run", "--stages", "cap")
    line = error_line(result.stderr)
    assert result.returncode == 2
    for word in words:
        assert word in line, (word, line)


def test_a_hub_dataset_that_cannot_be_had_offline_says_how_to_fix_it(tmp_path, cache_dir):
    recipe = copy_recipe(tmp_path / "recipe")
    config = yaml.safe_load((recipe / "cap.yaml").read_text())
    config["mixture"][0] = {"name": "en", "dataset": "nobody-here/no-such-dataset", "weight": 1.0}
    (recipe / "cap.yaml").write_text(yaml.safe_dump(config))
    result = aurora("run", recipe, "--output-dir", tmp_path / "run", "--stages", "cap")
    line = error_line(result.stderr)
    assert result.returncode == 2 and "nobody-here/no-such-dataset" in line and "HF_HUB_OFFLINE" in line


def test_no_token_in_any_file_the_run_writes(tmp_path, cache_dir):
    hub_token, env_token = "hf_" + "A" * 34, "hf_" + "B" * 34
    recipe = copy_recipe(
        tmp_path / "recipe",
        **{
            "cap.yaml": {
                **SHORT["cap.yaml"],
                "max_steps": 8,
                "train_tokens": 8192,
                "hub_token": hub_token,
                "env": {"HF_TOKEN": env_token},
            }
        },
    )
    run = tmp_path / "run"
    cli_token = "hf_" + "C" * 34
    result = aurora("run", recipe, "--output-dir", run, "--stages", "cap", "--hub_token", cli_token)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run / "cap").glob("checkpoint-*/training_args.bin"))  # the pickle a token used to hide in
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for token in (hub_token, env_token, cli_token):
                assert token.encode() not in data, path
    assert hub_token not in result.stdout + result.stderr and env_token not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- real small disks
@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of a few MB (or read-only), where the machine lets us mount one; otherwise the test skips."""
    mounts = []

    def make(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        if (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
            ).returncode
            != 0
        ):
            pytest.skip("cannot mount a tmpfs here (needs root in a mount namespace that allows it)")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_really_full_disk_says_no_space_left_with_the_path(tmp_path, cache_dir, small_disk):
    recipe = copy_recipe(tmp_path / "recipe")
    disk = small_disk("6m")  # holds the packed data (~200 KB) but not a checkpoint with its optimizer state
    result = aurora("run", recipe, "--output-dir", disk / "run", "--stages", "cap")
    line = error_line(result.stderr)
    assert result.returncode == 2 and "no space left on device while writing" in line and str(disk) in line


def test_a_read_only_output_folder_is_refused_in_one_line(tmp_path, cache_dir, small_disk):
    recipe = copy_recipe(tmp_path / "recipe")
    disk = small_disk("1m", read_only=True)
    result = aurora("run", recipe, "--output-dir", disk / "run")
    line = error_line(result.stderr)
    assert result.returncode == 2 and "not writable" in line and str(disk) in line


# ---------------------------------------------------------------------------------------------- SIGTERM
def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def test_sigterm_mid_data_step_under_tee_ends_every_process_in_one_line_and_the_step_resumes(tmp_path, cache_dir):
    """What Slurm, `timeout` and `docker stop` send, to aurora-m alone (not its group): the same clean-up as Ctrl-C,
    every helper process ended (else they hold the pipe of `| tee` open forever), and the next run completes."""
    from aurora_m.signals import descendants

    recipe = copy_recipe(tmp_path / "recipe")
    run, log = tmp_path / "run", tmp_path / "log.txt"
    command = f"{sys.executable} -m aurora_m.cli data {recipe} --stage cap --output-dir {run} 2>&1 | tee {log}"
    shell = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env={**os.environ, **OFFLINE}, start_new_session=True
    )
    deadline, helpers = time.time() + 300, []
    while not helpers:  # a deterministic point: datatrove's workers are up, building the partial dataset
        assert shell.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
        (main_pid,) = [p for p in descendants(shell.pid) if b"aurora_m.cli" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if (run / "cap" / ".data.partial" / "logs").is_dir():
            helpers = descendants(main_pid)
    os.kill(main_pid, signal.SIGTERM)
    try:
        code = shell.wait(timeout=120)
    except subprocess.TimeoutExpired:
        left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:100] for p in descendants(shell.pid)}
        os.killpg(shell.pid, signal.SIGKILL)
        raise AssertionError(f"still running: {left}\n{log.read_text()[-2000:]}") from None
    assert code == 143  # tee saw the end of the pipe: nothing of ours holds it
    text = log.read_text()
    assert [line for line in text.splitlines() if "error:" in line] == [
        "aurora-m: error: terminated (SIGTERM): run the same command again to resume (complete steps and "
        "checkpoints are kept)"
    ] and "Traceback" not in text
    assert not [p for p in helpers if _running(p)], "a helper process outlived aurora-m"
    assert RunLayout(run).lock.read_text() == ""
    again = aurora("data", recipe, "--stage", "cap", "--output-dir", run)
    assert again.returncode == 0 and '"cap/data": "completed"' in again.stdout, again.stderr[-3000:]


# ---------------------------------------------------------------------------------------------- outputs on disk
def test_hand_deleted_or_tampered_outputs_are_never_published_and_run_makes_them_again(
    tiny_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("AURORA_M_ALLOW_CODE_EXECUTION", "1")  # as the tiny run was made (its eval stage runs code)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    base, out = "aurora-m-tiny-base", tmp_path / "export"
    # summary.json is a report: pointing a variant at another stage's weights exports nothing else
    summary = json.loads((run / "summary.json").read_text())
    for variant in summary["variants"]:
        variant["model_dir"] = "cat/model"
    (run / "summary.json").write_text(json.dumps(summary))
    assert aurora("publish", run, "--variant", base, "--out", out).returncode == 0
    assert (out / "model.safetensors").read_bytes() == (run / "cap" / "model" / "model.safetensors").read_bytes()
    # an evaluation deleted by hand: not published with no numbers, and the advice names the command
    results = run / "eval" / base / "results.json"
    saved = results.read_bytes()
    results.unlink()
    refused = aurora("publish", run, "--variant", base, "--out", tmp_path / "again")
    line = error_line(refused.stderr)
    assert refused.returncode == 2 and f"eval/eval: eval/{base}/results.json was deleted since it ran" in line
    assert f"run `aurora-m run {TINY} --output-dir {run}` first" in line and not (tmp_path / "again").exists()
    results.write_bytes(saved)  # put back as it was: complete again (the digest matches)
    # an export's card deleted, then its weights edited (same size): no push, and `run` makes the export again
    before = markers(run)
    (run / "publish" / base / "README.md").unlink()
    weights = run / "publish" / base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    pushed = aurora("publish", run, "--variant", base, "--dry-run")
    assert pushed.returncode == 2 and f"publish/{base}/" in error_line(pushed.stderr)
    again = aurora("run", TINY, "--output-dir", run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"publish/publish: publish/{base}/" in again.stderr and "running it again" in again.stderr
    after = markers(run)
    assert {k for k in before if before[k] != after[k]} == {"publish/.publish.done"}  # nothing else ran
    assert (run / "publish" / base / "README.md").is_file()
    assert weights.read_bytes() == (run / "cap" / "model" / "model.safetensors").read_bytes()
    assert aurora("publish", run, "--variant", base, "--dry-run").returncode == 0
