"""Nothing lost, nothing stale, judged by what is on disk: outputs recorded in markers (deleted, edited, touched),
exports verified before a push, summary.json never an input, every entry point guarding what it replaces, values
checked where they are read. Cheap: toy stage kinds that write a file, unit calls, no training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from aurora_m.cli import main
from aurora_m.errors import RecipeError
from aurora_m.io import atomic_dir, write_json
from aurora_m.layout import ExportDir, RunLayout
from aurora_m.pipeline import Pipeline
from aurora_m.recipe import load_recipe
from aurora_m.stages import StageKind, register_kind, unregister_kind

from conftest import TINY


# ---------------------------------------------------------------------------------------------- toy stages
@dataclass
class WordArguments:
    word: str = "river"
    output_dir: str | None = None


def make_step(ctx):
    (args,) = ctx.parse()
    ctx.dirs.root.mkdir(parents=True, exist_ok=True)
    (ctx.dirs.root / "made.txt").write_text(args.word * 3)
    ctx.dirs.root.joinpath(".runs.log").open("a").write("made\n")  # not an output: how often it ran


def use_step(ctx):
    (upstream,) = ctx.input_stages.values()
    ctx.dirs.root.mkdir(parents=True, exist_ok=True)
    (ctx.dirs.root / "used.txt").write_text((upstream.root / "made.txt").read_text().upper())


@pytest.fixture()
def toy_recipe(tmp_path) -> Path:
    for name, runner in (("toy-make", make_step), ("toy-use", use_step)):
        register_kind(
            StageKind(
                name=name,
                dataclasses=lambda: (WordArguments,),
                steps=(name.split("-")[1],),
                runners={"transformers": {name.split("-")[1]: runner}},
            )
        )
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "a.yaml").write_text("word: river\n")
    (folder / "b.yaml").write_text("word: lake\n")
    (folder / "pipeline.yaml").write_text(
        "name: toy\nstages:\n  - {name: a, kind: toy-make, config: a.yaml}\n"
        "  - {name: b, kind: toy-use, config: b.yaml, inputs: [a]}\n"
    )
    yield folder
    unregister_kind("toy-make")
    unregister_kind("toy-use")


def run(recipe: Path, out: Path) -> int:
    return main(["run", str(recipe), "--output-dir", str(out)])


def state(recipe: Path, out: Path, stage: str) -> tuple[str, str | None]:
    pipeline = Pipeline(load_recipe(recipe), out)
    return pipeline.step_state(pipeline.recipe.stage(stage), pipeline.recipe.stage(stage).steps[0])


def test_a_deleted_output_makes_its_step_stale_naming_the_file_and_run_makes_it_again(toy_recipe, tmp_path, logs):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    marker = json.loads((out / "a" / ".make.done").read_text())
    size, _, digest = marker["outputs"]["a/made.txt"]
    assert (size, digest) == (15, hashlib.blake2b(b"river" * 3, digest_size=16).hexdigest())  # an independent hash
    (out / "a" / "made.txt").unlink()
    assert state(toy_recipe, out, "a") == ("stale", "a/made.txt was deleted")
    assert state(toy_recipe, out, "b") == ("stale", "its input a/make is not complete")
    used = (out / "b" / ".use.done").stat().st_mtime_ns
    assert run(toy_recipe, out) == 0
    assert "a/make: a/made.txt was deleted: running it again" in logs.text
    assert (out / "a" / "made.txt").read_text() == "river" * 3
    # made again byte for byte: what read it is still complete, and is not run again
    assert (out / "b" / ".use.done").stat().st_mtime_ns == used
    assert state(toy_recipe, out, "b") == ("completed", None)


def test_a_same_size_edit_is_caught_and_a_touch_is_not(toy_recipe, tmp_path):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    made = out / "a" / "made.txt"
    os.utime(made, ns=(made.stat().st_atime_ns, made.stat().st_mtime_ns + 10**9))  # touched: same bytes
    assert state(toy_recipe, out, "a") == ("completed", None)
    made.write_text("RIVER" * 3)  # same size, other content
    assert state(toy_recipe, out, "a") == ("stale", "a/made.txt was changed (same size, other content)")
    (out / "b" / "used.txt").write_text("mine")
    assert state(toy_recipe, out, "b")[1] == "b/used.txt was changed (15 -> 4 bytes)"
    assert run(toy_recipe, out) == 0
    assert made.read_text() == "river" * 3 and (out / "b" / "used.txt").read_text() == "RIVER" * 3
    assert (out / "a" / ".runs.log").read_text() == "made\nmade\n"


def test_a_step_that_reads_a_stale_input_says_which_and_gives_a_command_that_works(toy_recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(toy_recipe, out) == 0
    (out / "a" / "made.txt").unlink()
    code = main(["run", str(toy_recipe), "--stages", "b", "--output-dir", str(out)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "'a', which is stale (a/made.txt was deleted)" in line
    command = line.split("run `", 1)[1].split("`", 1)[0].split()
    assert command[:2] == ["aurora-m", "run"]
    assert main(command[1:]) == 0  # the advice is a command that works
    assert (out / "a" / "made.txt").is_file()


# ---------------------------------------------------------------------------------------------- fingerprints
def test_renaming_a_variant_invalidates_what_is_named_by_it_only_and_says_which_key(tmp_path):
    recipe_dir = shutil.copytree(TINY, tmp_path / "recipe")
    layout = tmp_path / "run"

    def prints():
        recipe = load_recipe(recipe_dir, check_stages=False)
        pipeline = Pipeline(recipe, layout)
        return pipeline, {f"{s.name}/{step}": pipeline.print_of(s, step) for s in recipe.stages for step in s.steps}

    _, before = prints()
    text = (recipe_dir / "pipeline.yaml").read_text()
    (recipe_dir / "pipeline.yaml").write_text(text.replace("variant: aurora-m-tiny-base", "variant: tiny-base-v2"))
    pipeline, after = prints()
    changed = sorted(k for k in before if before[k].fingerprint != after[k].fingerprint)
    assert changed == ["eval/eval", "publish/publish"]  # no data step, no training
    from aurora_m.pipeline.fingerprint import explain_difference

    assert explain_difference(before["eval/eval"].as_dict(), after["eval/eval"]) == ["variant names changed"]


def test_an_engine_or_tokenizer_change_names_the_key_not_just_configuration_changed(tmp_path):
    """The stage's kind, engine and (a standalone data step's) tokenizer are in the fingerprint but not in its
    YAML: a re-run says which of them changed."""
    from aurora_m.pipeline.fingerprint import explain_difference

    recipe_dir = shutil.copytree(TINY, tmp_path / "recipe")

    def prints():
        recipe = load_recipe(recipe_dir, check_stages=False)
        pipeline = Pipeline(recipe, tmp_path / "run")
        return {f"{s.name}/{step}": pipeline.print_of(s, step) for s in recipe.stages for step in s.steps}

    before = prints()
    text = (recipe_dir / "pipeline.yaml").read_text()
    (recipe_dir / "pipeline.yaml").write_text(text.replace("engine: transformers", "engine: nanotron"))
    (recipe_dir / "cap.yaml").write_text(
        (recipe_dir / "cap.yaml").read_text().replace("tokenizer_vocab_size: 4096", "tokenizer_vocab_size: 4000")
    )
    after = prints()
    assert "pipeline.yaml: engine transformers -> nanotron" in explain_difference(
        before["cap/train"].as_dict(), after["cap/train"], stage="cap"
    )
    # CAT's data step trains nothing itself: its tokenizer is the first stage's (CAP's keys)
    assert explain_difference(before["cat/data"].as_dict(), after["cat/data"], stage="cat") == [
        "tokenizer (first stage's) tokenizer_vocab_size 4096 -> 4000"
    ]
    old_marker = {k: v for k, v in before["cat/data"].as_dict().items() if k != "origin"}  # written before this
    assert explain_difference(old_marker, after["cat/data"], stage="cat") == ["configuration changed"]


# ---------------------------------------------------------------------------------------------- exports and pushes
def _export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x01" * 64)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")

    def digest(path: Path) -> str:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()

    files = [{"path": p.name, "size": p.stat().st_size, "blake2b": digest(p)} for p in sorted(folder.iterdir())]
    write_json(
        folder / ExportDir.MARKER,
        {"variant": "v", "recipe": "r", "aurora_m_version": "0", "repo_id": "me/v", "branch": None, "files": files},
    )
    return folder


def test_a_same_size_edit_of_an_exports_weights_or_card_is_never_pushed(tmp_path):
    from aurora_m.hub.push import plan_push

    export = _export(tmp_path / "export")
    assert sorted(plan_push(export).files) == ["README.md", "model.safetensors"]
    for name, data in (("model.safetensors", b"\x02" * 64), ("README.md", None)):
        original = (export / name).read_bytes()
        (export / name).write_bytes(data or original.replace(b"# card", b"# CARD"))
        with pytest.raises(RecipeError, match=rf"changed since it was exported \({name}\).*nothing was pushed"):
            plan_push(export)
        (export / name).write_bytes(original)
    plan_push(export)


def test_nothing_is_written_inside_an_export_and_publish_all_keeps_out_of_the_users_folders(tmp_path):
    from aurora_m.pipeline.publish import _checked, check_exports_folder

    export = _export(tmp_path / "export")
    with pytest.raises(RecipeError, match="is inside the export"):
        _checked(tmp_path / "run", export / "dry-run")
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    with pytest.raises(RecipeError, match=r"holds what aurora-m did not write for --all \(notes\)"):
        check_exports_folder(mine, ["v"])
    shutil.rmtree(mine / "notes")
    shutil.copytree(export, mine / "v")
    check_exports_folder(mine, ["v"])  # our own exports of these variants: replaced with --overwrite as usual
    with pytest.raises(RecipeError, match=r"\(v\)"):
        check_exports_folder(mine, ["w"])


def test_a_symlinked_output_folder_is_written_through_and_the_link_kept(tmp_path):
    target = tmp_path / "elsewhere" / "export"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    link = tmp_path / "out"
    link.symlink_to(target)
    with atomic_dir(link) as tmp:
        (tmp / "new.txt").write_text("new")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_summary_json_is_a_report_never_what_decides_an_export(tmp_path):
    from aurora_m.pipeline.publish import recorded_summary

    recipe = load_recipe(TINY, check_stages=False)
    pipeline = Pipeline(recipe, tmp_path / "run")
    pipeline.layout.root.mkdir()
    write_json(pipeline.layout.marker, {"recipe": recipe.name})
    pipeline.save_recipe_copy()
    pipeline.write_summary()
    honest = recorded_summary(pipeline.layout)
    tampered = json.loads(pipeline.layout.summary.read_text())
    tampered["variants"][0]["model_dir"] = "cat/model"
    tampered["variants"][0]["lineage"] = tampered["variants"][1]["lineage"]
    pipeline.layout.summary.write_text(json.dumps(tampered))
    assert recorded_summary(pipeline.layout)["variants"] == honest["variants"]
    assert honest["variants"][0]["model_dir"] == "cap/model"


# ---------------------------------------------------------------------------------------------- scripts
def script_main(tmp_path, *argv):
    """scripts/pretrain.py as its users run it (in this process: the refusals come before any training)."""
    import runpy

    script = runpy.run_path(str(Path(TINY).parents[1] / "scripts" / "pretrain.py"))
    with pytest.raises(SystemExit) as exit_:
        script["run_script"](script["make_parser"], script["main"], list(map(str, argv)))
    return exit_.value.code


@pytest.mark.parametrize("case", ["users-folder", "empty-name", "inside-a-run"])
def test_a_script_refuses_an_output_dir_it_does_not_own(tmp_path, capsys, case):
    folder = {"users-folder": tmp_path / "mine", "empty-name": "", "inside-a-run": tmp_path / "run" / "cap"}[case]
    if case == "users-folder":
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "model.safetensors").write_bytes(b"precious")
    if case == "inside-a-run":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / RunLayout.MARKER).write_text("{}")
    code = script_main(tmp_path, "--config", TINY / "cap.yaml", "--output_dir", folder, "--use_cpu", "true")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in line
    assert {"users-folder": "no aurora-m script wrote", "empty-name": "empty", "inside-a-run": "inside the run"}[
        case
    ] in line
    if case == "users-folder":
        assert (folder / "model" / "model.safetensors").read_bytes() == b"precious"
        assert sorted(p.name for p in folder.rglob("*")) == ["model", "model.safetensors"]
    assert not Path("data").exists() or case != "empty-name"


def test_a_script_refuses_a_folder_whose_data_belongs_to_another_configuration(tmp_path):
    from aurora_m.pipeline.script_guard import claim_output_dir
    from aurora_m.stage_checks import parse_stage

    folder = tmp_path / "cap"
    cap = parse_stage(TINY / "cap.yaml", "pretrain", ["--output_dir", str(folder), "--use_cpu", "true"])
    claim_output_dir(folder, "pretrain", cap, TINY / "cap.yaml", None)
    (folder / "data").mkdir()
    (folder / "data" / "index.npy").write_bytes(b"")  # a built dataset
    claim_output_dir(folder, "pretrain", cap, TINY / "cap.yaml", None)  # the same configuration resumes
    cat = parse_stage(
        TINY / "cat.yaml",
        "pretrain",
        ["--output_dir", str(folder), "--use_cpu", "true", "--model_name_or_path", str(tmp_path)],
        has_model_input=True,
    )
    with pytest.raises(RecipeError, match=r"dataset data/ was built for another configuration, .*cap.yaml .*mixture"):
        claim_output_dir(folder, "pretrain", cat, TINY / "cat.yaml", None)
    shutil.rmtree(folder / "data")
    (folder / "checkpoint-8").mkdir()  # CAP's checkpoints: a CAT run here would resume them and train nothing
    with pytest.raises(RecipeError, match=r"its checkpoints and model belong to another configuration, .*cap.yaml"):
        claim_output_dir(folder, "pretrain", cat, TINY / "cat.yaml", "elsewhere")


# ---------------------------------------------------------------------------------------------- values where read
def test_yaml_numbers_read_as_yaml_1_2_reads_them(tmp_path):
    from aurora_m.overrides import read_yaml

    path = tmp_path / "x.yaml"
    path.write_text("weight: 1e2\nlr: 3e-4\nname: e5\nversion: 1.2.3\nsteps: 1_000\n")
    assert read_yaml(path) == {"weight": 100.0, "lr": 0.0003, "name": "e5", "version": "1.2.3", "steps": 1000}


def test_a_stage_name_the_filesystem_cannot_hold_is_refused_at_validate(tmp_path, capsys):
    recipe = shutil.copytree(TINY, tmp_path / "recipe")
    text = (recipe / "pipeline.yaml").read_text()
    (recipe / "pipeline.yaml").write_text(text.replace("name: publish", "name: " + "p" * 250))
    assert main(["validate", str(recipe)]) == 2
    assert "stages[5].name: expected letters, digits, '-' or '_', at most 64" in capsys.readouterr().err


@pytest.mark.parametrize(
    "rows,words",
    [
        (['["not", "an", "object"]'], ["row 1", "expected an object"]),
        (['{"text": "t", "code": null, "test_list": ["assert True"]}'], ["row 1: code", "expected text"]),
        (
            ['{"text": "t", "code": "x = 1", "test_list": ["assert x == 1"], "test_imports": "import math"}'],
            ["row 1: test_imports", "a list of import statements"],
        ),
    ],
    ids=["not-an-object", "code-null", "imports-a-string"],
)
def test_malformed_eval_code_rows_are_one_line(tmp_path, capsys, monkeypatch, rows, words):
    monkeypatch.setenv("AURORA_M_ALLOW_CODE_EXECUTION", "1")
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(rows) + "\n")
    assert main(["eval", "code", "--problems", str(path), "--canonical"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err


def test_binary_problems_and_bad_timeouts_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AURORA_M_ALLOW_CODE_EXECUTION", "1")
    binary = tmp_path / "mbpp.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert main(["eval", "code", "--problems", str(binary), "--canonical"]) == 2
    assert "line 1: not UTF-8 text" in capsys.readouterr().err
    for value in ("nan", "inf", "0", "-1"):
        assert main(["eval", "code", "--problems", "humaneval", "--canonical", "--timeout", value]) == 2
        assert f"--timeout: expected seconds above 0 and at most 3600 per program, got {float(value)}" in (
            capsys.readouterr().err
        )


def test_a_column_mixing_strings_and_numbers_keeps_every_string(tmp_path):
    from aurora_m.data.sources import read_source
    from aurora_m.source_spec import SourceSpec

    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "4"}, {"text": 5}, {"text": "five"}, {"text": "[1]"}, {"text": [1]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = SourceSpec.from_config({"name": "m", "path": str(path), "language": "en"}, list_key="mixture")
    docs, report = read_source(spec, str(tmp_path / "cap.yaml"), "mixture")
    assert docs.give("text") == ["4", "five", "[1]"]  # "4" is text, not the number 4
    assert (report.docs_read, report.kept, report.removed_not_text) == (5, 3, 2)  # the number and the list


def test_an_unwritable_home_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AURORA_M_CACHE", raising=False)
    monkeypatch.setenv("HOME", "/dev/null")  # what a service account without a home gets
    assert main(["data", str(TINY), "--stage", "cap", "--output-dir", str(tmp_path / "run")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "AURORA_M_CACHE" in line and "/dev/null is a file, expected a folder" in line, line
    assert not (tmp_path / "run").exists()


def test_a_garbage_tokenizer_cache_entry_is_made_again(tmp_path, monkeypatch, logs):
    from aurora_m.tokenizer import cache_root, cached_tokenizer

    monkeypatch.setenv("AURORA_M_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"line {i} of rivers and lakes"}) + "\n" for i in range(50)))
    first = cached_tokenizer([str(corpus)], 300)
    (saved,) = (cache_root() / "tokenizers").glob("*/tokenizer.json")
    saved.write_text("{ not json")
    again = cached_tokenizer([str(corpus)], 300)
    assert again("rivers and lakes")["input_ids"] == first("rivers and lakes")["input_ids"]
    assert "the cached tokenizer does not load" in logs.text


def test_an_output_name_that_is_not_utf8_is_one_line(tmp_path, capsys):
    name = os.fsdecode(bytes(tmp_path) + b"/run-\xff")  # what a Latin-1 shell passes for "run-ÿ"
    assert main(["run", str(TINY), "--output-dir", name, "--stages", "cap"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "run-\\udcff: --output-dir: the name is not UTF-8 text" in line, line
    assert os.listdir(tmp_path) == []
