"""The pipeline's logic with toy stage kinds registered from the test (no training): fingerprints, markers,
engines, the run folder (ownership, lock, housekeeping), overrides and failures. Each test takes a second."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aurora_m.cli import main
from aurora_m.errors import RecipeError
from aurora_m.layout import RunLayout
from aurora_m.locking import run_lock
from aurora_m.stages import Engine, StageKind, register_engine, register_kind, unregister_kind

CALLS: list[tuple[str, str]] = []


@dataclass
class ToyArguments:
    toy_sources: list[dict] = field(default_factory=list)
    greeting: str = "hello"
    fail_with: str = ""  # what the runner raises, to test how failures end
    logging_steps: int = 10  # cannot change the result
    shout: bool = False
    output_dir: str | None = None


def toy_runner(ctx):
    """Writes the greeting and its sources' contents (and what its inputs wrote) into the stage folder."""
    (args,) = ctx.parse()
    CALLS.append((ctx.stage, ctx.engine))
    if args.fail_with == "ctrl-c":
        raise KeyboardInterrupt
    if args.fail_with == "disk-full":
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.dirs.root / "toy.txt"))
    if args.fail_with == "user":
        raise RecipeError(ctx.config, "greeting", "not a greeting")
    text = [args.greeting] + [Path(s["path"]).read_text() for s in args.toy_sources]
    text += [(d.root / "toy.txt").read_text() for d in ctx.input_stages.values()]
    ctx.dirs.root.mkdir(parents=True, exist_ok=True)
    (ctx.dirs.root / "toy.txt").write_text("|".join(text))


def other_engine_runner(ctx):
    CALLS.append((ctx.stage, ctx.engine))
    ctx.dirs.root.mkdir(parents=True, exist_ok=True)
    (ctx.dirs.root / "toy.txt").write_text(f"made by {ctx.engine}")


@pytest.fixture()
def toy_kind():
    register_engine(Engine("stdlib-json", "json", "nothing to install"))  # an engine that is "installed"
    kind = register_kind(
        StageKind(
            name="toy",
            dataclasses=lambda: (ToyArguments,),
            steps=("write",),
            source_key="toy_sources",
            runners={
                "transformers": {"write": toy_runner},
                "stdlib-json": {"write": other_engine_runner},
                "nanotron": {"write": "aurora_m.engines.nanotron:not_here"},
            },
        )
    )
    CALLS.clear()
    yield kind
    unregister_kind("toy")


@pytest.fixture()
def toy_recipe(tmp_path, toy_kind) -> Path:
    recipe = tmp_path / "toy-recipe"
    recipe.mkdir()
    (recipe / "data.jsonl").write_text('{"text": "one"}\n')
    (recipe / "pipeline.yaml").write_text(
        "name: toy\nstages:\n"
        "  - {name: a, kind: toy, config: a.yaml}\n"
        "  - {name: b, kind: toy, config: b.yaml, inputs: [a]}\n"
    )
    (recipe / "a.yaml").write_text("toy_sources:\n  - {name: s, path: data.jsonl}\ngreeting: hi\nlogging_steps: 5\n")
    (recipe / "b.yaml").write_text("toy_sources:\n  - {name: s, path: data.jsonl}\ngreeting: bye\n")
    return recipe


def run(recipe: Path, out: Path, *extra: str) -> int:
    return main(["run", str(recipe), "--output-dir", str(out), *extra])


def test_a_kind_registered_by_a_test_runs_through_aurora_m_run(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    assert (out / "a" / "toy.txt").read_text() == 'hi|{"text": "one"}\n'
    assert (out / "b" / "toy.txt").read_text().endswith('hi|{"text": "one"}\n')  # b read a's output
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [("a", "completed"), ("b", "completed")]
    assert CALLS == [("a", "transformers"), ("b", "transformers")]
    capsys.readouterr()
    assert run(toy_recipe, out) == 0  # everything complete: nothing runs
    assert CALLS == [("a", "transformers"), ("b", "transformers")]
    assert "nothing to run" in capsys.readouterr().err


def test_editing_a_file_a_step_reads_reruns_it_and_what_follows(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    (toy_recipe / "data.jsonl").write_text('{"text": "two"}\n')  # same config, new content
    CALLS.clear()
    assert run(toy_recipe, out) == 0
    assert CALLS == [("a", "transformers"), ("b", "transformers")]
    assert "two" in (out / "b" / "toy.txt").read_text()


def test_keys_that_cannot_change_the_result_do_not_rerun(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    (toy_recipe / "a.yaml").write_text(
        (toy_recipe / "a.yaml").read_text().replace("logging_steps: 5", "logging_steps: 1")
    )
    CALLS.clear()
    assert run(toy_recipe, out) == 0
    assert CALLS == []
    (toy_recipe / "b.yaml").write_text((toy_recipe / "b.yaml").read_text().replace("bye", "ciao"))
    assert run(toy_recipe, out) == 0
    assert CALLS == [("b", "transformers")]  # only the edited stage (nothing follows it)


def test_engine_picks_the_runner_and_a_missing_engine_fails_validation_with_the_hint(toy_recipe, tmp_path, capsys):
    pipeline = toy_recipe / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("config: a.yaml}", "config: a.yaml, engine: stdlib-json}"))
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    assert (out / "a" / "toy.txt").read_text() == "made by stdlib-json"
    assert CALLS[0] == ("a", "stdlib-json")
    pipeline.write_text(pipeline.read_text().replace("engine: stdlib-json", "engine: nanotron"))
    capsys.readouterr()
    assert main(["validate", str(toy_recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "stages[0].engine" in err and "not installed" in err and "nanotron" in err and len(err.splitlines()) == 1


def test_overrides_reach_the_stages_that_have_the_key(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out, "--greeting", "yo") == 0
    assert (out / "a" / "toy.txt").read_text().startswith("yo|")
    assert run(toy_recipe, out, "--greting", "yo") == 2
    assert "--greting: not a key of any stage (did you mean '--greeting'?)" in capsys.readouterr().err


def test_a_folder_that_is_not_a_run_folder_is_refused_untouched(toy_recipe, tmp_path, capsys):
    out = tmp_path / "experiments"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert run(toy_recipe, out) == 2
    assert "was not written by aurora-m" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "my notes"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert run(toy_recipe, a_file) == 2
    assert run(toy_recipe, a_file / "below") == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "x"


def test_a_run_folder_of_another_recipe_is_refused(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    pipeline = toy_recipe / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("name: toy", "name: other"))
    assert run(toy_recipe, out) == 2
    assert "holds a run of recipe 'toy'" in capsys.readouterr().err


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(RunLayout(out).lock, "aurora-m run (the first one)"):
        assert run(toy_recipe, out) == 2
    err = capsys.readouterr().err
    assert f"in use by process {os.getpid()}" in err and "one run per folder" in err
    assert CALLS == []
    assert run(toy_recipe, out) == 0  # released: the next run goes ahead


def test_a_lock_left_by_a_dead_process_is_taken_over_and_its_temp_files_removed(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    dead = 2**22 + 12345  # above pid_max's default: no such process
    RunLayout(out).lock.write_text(json.dumps({"pid": dead, "host": "gone", "command": "aurora-m run"}))
    leftover = out / "a" / f".model.tmp-{dead}-abcd"
    leftover.mkdir(parents=True)
    (leftover / "weights").write_bytes(b"0" * 100)
    ours = out / "a" / f".x.tmp-{os.getpid()}-live"  # a live process's temp: not touched
    ours.mkdir()
    (toy_recipe / "b.yaml").write_text((toy_recipe / "b.yaml").read_text().replace("bye", "ciao"))
    assert run(toy_recipe, out) == 0
    assert not leftover.exists() and ours.is_dir()


@pytest.mark.parametrize(
    "failure,code,words",
    [
        ("ctrl-c", 130, ["interrupted", "run the same command again to resume"]),
        ("disk-full", 2, ["no space left on device while writing", "toy.txt"]),
        ("user", 2, ["a.yaml: greeting: not a greeting"]),
    ],
)
def test_failures_end_in_one_line_and_leave_the_step_incomplete(toy_recipe, tmp_path, capsys, failure, code, words):
    out = tmp_path / "run"
    assert run(toy_recipe, out, "--fail_with", failure) == code
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[aurora-m]"))
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert not (out / "a" / ".write.done").exists()
    assert run(toy_recipe, out) == 0  # the next run is not blocked by what the failure left
    assert (out / "b" / "toy.txt").is_file()


def test_an_interrupted_main_called_from_python_leaves_the_callers_processes_alone(toy_recipe, tmp_path):
    """Ctrl-C ends every process the command started, not those its caller (a notebook, a test's fork server)
    already had: they live on, and the caller can still wait for them."""
    import subprocess

    caller_child = subprocess.Popen(["sleep", "30"])
    try:
        assert run(toy_recipe, tmp_path / "run", "--fail_with", "ctrl-c") == 130
        assert caller_child.poll() is None  # not ended, and not reaped behind the caller's back
    finally:
        caller_child.kill()
    assert caller_child.wait(timeout=10) == -9


def test_a_moved_run_folder_keeps_its_records_valid(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(out, moved)
    summary = json.loads((moved / "summary.json").read_text())
    for stage in summary["stages"]:
        assert (moved / stage["output_dir"]).is_dir()
    CALLS.clear()
    assert run(toy_recipe, moved) == 0 and CALLS == []  # still complete where it now lies


def test_data_outside_the_recipe_needs_a_data_root(toy_recipe, tmp_path, capsys):
    shared = tmp_path / "corpora"
    shared.mkdir()
    (shared / "big.jsonl").write_text('{"text": "shared"}\n')
    (toy_recipe / "a.yaml").write_text(f"toy_sources:\n  - {{name: s, path: {shared / 'big.jsonl'}}}\n")
    assert main(["validate", str(toy_recipe)]) == 2
    assert "a.yaml: toy_sources[0].path" in capsys.readouterr().err
    pipeline = toy_recipe / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text() + f"data_roots: [{shared}]\n")
    assert main(["validate", str(toy_recipe)]) == 0
    assert run(toy_recipe, tmp_path / "run") == 0
    assert "shared" in (tmp_path / "run" / "a" / "toy.txt").read_text()


def test_overrides_are_checked_before_anything_runs(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out, "--logging_steps", "abc") == 2
    assert "command line: --logging_steps: expected int, got 'abc'" in capsys.readouterr().err
    assert run(toy_recipe, out, "--greeting") == 2
    assert "command line: --greeting: missing a value" in capsys.readouterr().err
    assert CALLS == [] and not (out / "a").exists()


@pytest.mark.parametrize("stages", ["a,nope", ""])
def test_unknown_or_empty_stage_lists_are_refused(toy_recipe, tmp_path, capsys, stages):
    assert run(toy_recipe, tmp_path / "run", "--stages", stages) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("no stage named 'nope'" in err or "--stages" in err)


def test_an_output_folder_that_cannot_be_created_is_refused(toy_recipe, capsys):
    assert run(toy_recipe, Path("/proc/aurora-m-run")) == 2
    assert "not writable" in capsys.readouterr().err


def test_a_step_is_stale_when_what_it_read_was_replaced(toy_recipe, tmp_path):
    """b ran on a's output; a re-run of a alone (here with an override) makes b stale, not complete."""
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    assert main(["run", str(toy_recipe), "--output-dir", str(out), "--stages", "a", "--greeting", "changed"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {s["name"]: s["status"] for s in summary["stages"]} == {"a": "completed", "b": "stale"}
    CALLS.clear()
    assert run(toy_recipe, out) == 0  # a runs again, as first configured: b read an output since replaced
    assert CALLS == [("a", "transformers"), ("b", "transformers")]
    assert (out / "b" / "toy.txt").read_text().endswith((out / "a" / "toy.txt").read_text())


def test_restart_and_resume_must_name_stages_the_command_runs(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out, "--stages", "a", "--restart", "b") == 2
    assert "--restart: b is not among the stages this command runs (a)" in capsys.readouterr().err
    assert run(toy_recipe, out, "--restart", "a", "--resume", "a") == 2
    assert "both --restart and --resume" in capsys.readouterr().err
    assert CALLS == []


def test_an_output_folder_inside_another_run_is_refused(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    assert run(toy_recipe, out / "a" / "nested") == 2
    assert "is inside the run folder" in capsys.readouterr().err


def test_a_boolean_given_as_no_or_false_is_the_same_configuration(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out, "--shout", "false") == 0
    CALLS.clear()
    assert run(toy_recipe, out, "--shout", "no") == 0
    assert run(toy_recipe, out, "--shout", "0") == 0
    assert CALLS == []


def test_a_failed_rerun_leaves_the_summary_saying_so(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    assert run(toy_recipe, out, "--fail_with", "user") == 2
    summary = json.loads((out / "summary.json").read_text())
    assert next(s for s in summary["stages"] if s["name"] == "a")["status"] != "completed"


def test_nanotron_checkpoints_are_guarded_like_the_trainers_own(tmp_path, toy_kind, capsys):
    """A stage that left nanotron step folders: an edit that changes its result is refused naming them, and
    --restart sets the whole nanotron folder (with latest.txt) and its loss lines aside, deleting nothing."""
    register_kind(
        StageKind(
            name="toy-ckpt",
            dataclasses=lambda: (ToyArguments,),
            steps=("write",),
            source_key="toy_sources",
            resumable_step="write",
            runners={"transformers": {"write": toy_runner}},
        )
    )
    try:
        recipe = tmp_path / "recipe"
        recipe.mkdir()
        (recipe / "data.jsonl").write_text('{"text": "one"}\n')
        (recipe / "pipeline.yaml").write_text("name: toy\nstages:\n  - {name: a, kind: toy-ckpt, config: a.yaml}\n")
        (recipe / "a.yaml").write_text("toy_sources:\n  - {name: s, path: data.jsonl}\ngreeting: hi\n")
        out = tmp_path / "run"
        assert run(recipe, out) == 0
        steps = out / "a" / "nanotron"
        for step in ("2", "4"):
            (steps / step).mkdir(parents=True)
        (steps / "latest.txt").write_text("4")
        (out / "a" / "nanotron-losses.jsonl").write_text('{"step": 1, "loss": 8.0}\n')
        (recipe / "a.yaml").write_text("toy_sources:\n  - {name: s, path: data.jsonl}\ngreeting: hey\n")
        capsys.readouterr()
        assert run(recipe, out) == 2
        err = capsys.readouterr().err
        assert "greeting" in err and "since nanotron/4" in err and "--restart a" in err, err
        assert (steps / "4").is_dir()  # nothing moved or deleted
        # nor is the run's record of the recipe that made its outputs (publish checks against it)
        assert "greeting: hi" in (out / "recipe" / "a.yaml").read_text()
        elsewhere = tmp_path / "elsewhere"
        shutil.copytree(recipe, elsewhere)
        assert run(elsewhere, out) == 2
        assert json.loads((out / "recipe" / ".recipe-source.json").read_text())["recipe_dir"] == str(recipe.resolve())
        assert run(recipe, out, "--restart", "a") == 0
        aside = list((out / "a").glob("set-aside-restart-*"))
        assert len(aside) == 1 and not steps.exists() and not (out / "a" / "nanotron-losses.jsonl").exists()
        assert sorted(p.name for p in (aside[0] / "nanotron").iterdir()) == ["2", "4", "latest.txt"]
        assert (aside[0] / "nanotron-losses.jsonl").is_file()
    finally:
        unregister_kind("toy-ckpt")
