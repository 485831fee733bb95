"""Every YAML under recipes/ parses, and the recipe format rejects mistakes with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aurora_m.budget import Budget
from aurora_m.cli import main
from aurora_m.recipe import load_recipe
from aurora_m.stage_checks import parse_stage, stage_dataclasses

from conftest import ROOT, cli, edit_yaml

RECIPES = sorted(p.parent for p in (ROOT / "recipes").glob("*/pipeline.yaml"))


def test_the_tiny_twin_mirrors_the_real_recipe():
    """Same stages, kinds, wiring and variants' roles; same sources per stage (languages, code, red team)."""
    real, tiny = load_recipe(ROOT / "recipes" / "aurora-m-15b"), load_recipe(ROOT / "recipes" / "aurora-m-tiny")
    assert [(s.name, s.kind, s.inputs, bool(s.variant)) for s in real.stages] == [
        (s.name, s.kind, s.inputs, bool(s.variant)) for s in tiny.stages
    ]
    aliases = {"code": ("code", "python")}
    for stage in real.stages:
        if stage.kind != "pretrain":
            continue
        real_sources = {s["name"] for s in yaml.safe_load(stage.config.read_text())["mixture"]}
        tiny_sources = {s["name"] for s in yaml.safe_load(tiny.stage(stage.name).config.read_text())["mixture"]}
        assert {"en", "fi", "hi", "ja", "vi", "code"} <= tiny_sources, stage.name
        for name in tiny_sources:  # each tiny source stands for one of the real stage's (wiki-fi, python, ...)
            names = aliases.get(name, (name,))
            assert any(r in names or r.rsplit("-", 1)[-1] in names for r in real_sources), (stage.name, name)
    tiny_cap = yaml.safe_load(tiny.stage("cap").config.read_text())
    assert tiny_cap["config_patches"][:2] == ["aurora_m", "tiny"]  # the real shape, then shrunk


@pytest.mark.parametrize("recipe_dir", RECIPES, ids=lambda p: p.name)
def test_every_stage_yaml_parses_into_its_dataclasses(recipe_dir: Path):
    recipe = load_recipe(recipe_dir)
    assert [s.kind for s in recipe.stages][:2] == ["pretrain", "pretrain"]
    for stage in recipe.stages:
        parsed = parse_stage(
            stage.config,
            stage.kind,
            validate_only=True,
            has_model_input=bool(stage.inputs),
            input_positions=recipe.input_positions(stage),
        )
        assert [type(a) for a in parsed] == list(stage_dataclasses(stage.kind)), stage.name
    # every YAML in the folder is a stage of the pipeline (no orphan configs)
    used = {recipe.file.name, *(s.config.name for s in recipe.stages)}
    assert {p.name for p in recipe_dir.glob("*.yaml")} == used


def test_real_recipe_carries_the_papers_numbers():
    recipe = load_recipe(ROOT / "recipes" / "aurora-m-15b")
    (model, mix, train) = parse_stage(recipe.stage("cap").config, "pretrain", validate_only=True)
    assert model.model_name_or_path == "bigcode/starcoderplus"
    assert "aurora_m" in model.config_patches and "tiny" not in model.config_patches
    assert mix.seq_length == 2048
    assert mix.train_tokens == 377_487_360_000  # the paper's "377B tokens in 90k steps"
    assert train.max_steps < 0  # derived at launch: the budget over 64 GPUs x 4 x 8 accumulation x 2048
    on_64_gpus = Budget(
        train.per_device_train_batch_size, train.gradient_accumulation_steps, 64, mix.seq_length, mix.train_tokens
    )
    assert on_64_gpus.sequences_per_step == 2048 and on_64_gpus.steps == 90_000
    (cat_model, cat_mix, cat_train) = parse_stage(
        recipe.stage("cat").config, "pretrain", validate_only=True, has_model_input=True
    )
    assert cat_mix.train_tokens == 58_300_825_600  # "58B" and the released "step 103.9k" (90k + 13.9k) both
    assert Budget(4, 8, 64, 2048, cat_mix.train_tokens).steps == 13_900
    assert cat_model.init_from == "full_state"  # the step count carries on from CAP's 90k
    assert recipe.stage("cat").inputs == ["cap"]
    assert any(s["dataset"] == "aurora-m/biden-harris-redteam" for s in cat_mix.mixture if "dataset" in s)


def test_accelerate_configs_mirror_trl_names():
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "recipes" / "accelerate_configs").glob("*.yaml")}
    assert {"single_gpu", "multi_gpu", "zero3", "fsdp2"} <= set(configs)
    assert configs["fsdp2"]["fsdp_config"]["fsdp_version"] == 2
    assert configs["zero3"]["deepspeed_config"]["zero_stage"] == 3


def test_tiny_recipe_validates(capsys):
    assert main(["validate", str(ROOT / "recipes" / "aurora-m-tiny")]) == 0
    assert "valid" in capsys.readouterr().out


BROKEN = [
    # (file, old text, new text, words the one-line error must contain)
    ("cap.yaml", "learning_rate: 3.0e-3", "lerning_rate: 3.0e-3", ["cap.yaml", "lerning_rate", "learning_rate"]),
    ("cap.yaml", "seq_length: 128", "seq_length: long", ["cap.yaml", "seq_length", "int"]),
    ("cap.yaml", "path: data/fi.jsonl", "path: data/fi-missing.jsonl", ["cap.yaml", "mixture[1].path", "not found"]),
    ("pipeline.yaml", "config: cap.yaml\n", "config: cap.yaml\n    inputs: [sft]\n", ["pipeline.yaml", "cycle"]),
    ("pipeline.yaml", "inputs: [cap]", "inputs: [cpa]", ["pipeline.yaml", "stages[1].inputs", "missing predecessor"]),
    ("cap.yaml", "weight: 1.5, holdout", "weight: -1, holdout", ["cap.yaml", "mixture[5].weight", "positive"]),
    ("cap.yaml", "weight: 1.5, holdout", "weight: lots, holdout", ["cap.yaml", "mixture[5].weight"]),
    # a number in quotes is text, for a float key as for an int key (a string "0.17" once passed as a weight)
    (
        "cap.yaml",
        "weight: 1.5, holdout",
        'weight: "0.17", holdout',
        ["cap.yaml", "mixture[5].weight: expected float", "a number in quotes is text"],
    ),
    (
        "cap.yaml",
        "seq_length: 128",
        'seq_length: "128"',
        ["cap.yaml", "seq_length: expected int", "in quotes is text"],
    ),
    (
        "cap.yaml",
        "learning_rate: 3.0e-3",
        'learning_rate: "0.003"',
        ["cap.yaml", "learning_rate: expected float", "in quotes is text"],
    ),
    ("cap.yaml", '"attn:sdpa"', '"attn:fast"', ["cap.yaml", "config_patches", "attention"]),
    ("cat.yaml", "seq_length: 128", "seq_length: 128\nconfig_patches: [tiny]", ["cat.yaml", "config_patches", "tiny"]),
    ("pipeline.yaml", "engine: transformers", "engine: nanotorn", ["pipeline.yaml", "stages[0].engine"]),
    ("sft.yaml", "max_length: 512", "max_length: 512\nmax_seq_length: 256", ["sft.yaml", "max_seq_length"]),
    (
        "cap.yaml",
        "weight: 1.5, holdout",
        "wieght: 1.5, holdout",
        ["cap.yaml", "mixture[5].wieght", "did you mean 'weight'"],
    ),
    ("cap.yaml", "seq_length: 128", "seq_length: 4096", ["cap.yaml", "seq_length", "2048 learned positions"]),
    ("eval.yaml", "seq_length: 128", "seq_length: 4096", ["eval.yaml", "seq_length", "2048 learned positions"]),
    ("cap.yaml", "max_steps: 240", "max_steps: 0", ["cap.yaml", "max_steps", "positive"]),
    ("cap.yaml", "train_tokens: 245760", "train_tokens: -5", ["cap.yaml", "train_tokens", "positive"]),
    ("cap.yaml", "report_to: none", "report_to: tensorbord", ["cap.yaml", "report_to", "did you mean 'tensorboard'"]),
    ("cap.yaml", "report_to: none", "report_to: wandb", ["cap.yaml", "report_to", "pip install wandb"]),
    (
        "pipeline.yaml",
        "variant: aurora-m-tiny-base",
        "variant: ../../x",
        ["pipeline.yaml", "stages[0].variant", "Hub repo name"],
    ),
    ("pipeline.yaml", "variant: aurora-m-tiny-base", "variant: a/b", ["pipeline.yaml", "stages[0].variant"]),
    (
        "pipeline.yaml",
        "config: cap.yaml",
        "config: ../../../../../../etc/passwd",
        ["pipeline.yaml", "stages[0].config", "outside the recipe folder"],
    ),
    ("cap.yaml", "path: data/fi.jsonl", "path: ../../outside.jsonl", ["cap.yaml", "mixture[1].path", "data_roots"]),
    ("cap.yaml", "learning_rate: 3.0e-3", "learning_rate: .nan", ["cap.yaml", "learning_rate", "finite"]),
    (
        "cap.yaml",
        "per_device_train_batch_size: 8",
        "per_device_train_batch_size: 0",
        ["cap.yaml", "per_device_train_batch_size", "positive"],
    ),
    ("cap.yaml", "train_tokens: 245760", "train_tokens: 100", ["cap.yaml", "train_tokens", "less than one sequence"]),
    ("sft.yaml", "max_length: 512", "max_length: 99999", ["sft.yaml", "max_length", "2048 learned positions"]),
    ("pipeline.yaml", "- name: cap ", "- name: recipe ", ["pipeline.yaml", "stages[0].name", "copy of the recipe"]),
    ("cap.yaml", "seq_length: 128", "seq_length: 128\nseq_length: 64", ["cap.yaml", "duplicate key 'seq_length'"]),
    (
        "pipeline.yaml",
        "engine: transformers",
        "engine: nanotron",
        ["pipeline.yaml", "stages[0].engine", "'nanotron' is not installed", "docs/nanotron.md"],
    ),
    # the corpus keys, before any document is read
    (
        "cat.yaml",
        "max_symbol_digit_ratio: 0.2",
        "max_symbol_digit_ratio: -1",
        ["cat.yaml", "max_symbol_digit_ratio", "(0, 1]"],
    ),
    ("cap.yaml", "mixture_seed: 1234", "mixture_seed: 1234\nfim_rate: 2", ["cap.yaml", "fim_rate", "[0, 1]"]),
    ("cap.yaml", "mixture_seed: 1234", "mixture_seed: 1234\ntemperature: 0", ["cap.yaml", "temperature"]),
    (
        "cap.yaml",
        "mixture_seed: 1234",
        "mixture_seed: 1234\nmislabelled: sometimes",
        ["cap.yaml", "mislabelled", "drop, reroute"],
    ),
    (
        "cap.yaml",
        "mixture_seed: 1234",
        "mixture_seed: 1234\nquality_overrides: {gopher_quality: {min_doc_wordz: 3}}",
        ["cap.yaml", "quality_overrides", "min_doc_wordz"],
    ),
    (
        "cap.yaml",
        "mixture_seed: 1234",
        "mixture_seed: 1234\nlanguage_id_min_score: {xx: 0.5}",
        ["cap.yaml", "language_id_min_score.xx"],
    ),
    (
        "cap.yaml",
        "mixture_seed: 1234",
        "mixture_seed: 1234\nlanguage_id_any_rank: [sw, kr]",
        ["cap.yaml", "language_id_any_rank", "'kr'"],
    ),
    (
        "cap.yaml",
        "{name: code, path: data/code.jsonl, weight: 1.5,",
        "{name: code, path: data/code.jsonl, replay: true,",
        ["cap.yaml", "replay_share", "sources code", "no tokens"],
    ),
    (
        "cap.yaml",
        "{name: en, path: data/en.jsonl, weight: 1.0,",
        "{name: en, path: data/en.jsonl, language: xx,",
        ["cap.yaml", "mixture[0].language"],
    ),
]


@pytest.mark.parametrize("file,old,new,words", BROKEN, ids=[f"{b[0]}:{b[2][:20]}" for b in BROKEN])
def test_validate_rejects_broken_recipe_with_one_line(recipe_copy, capsys, file, old, new, words):
    edit_yaml(recipe_copy / file, old, new)
    assert main(["validate", str(recipe_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


def test_a_float_yaml_11_reads_as_a_string_is_still_a_number(recipe_copy, capsys):
    """PyYAML reads 3e-3 (no dot) and 1.0e3 (unsigned exponent) as strings: those, and only those, a float key
    takes as written."""
    edit_yaml(recipe_copy / "cap.yaml", "learning_rate: 3.0e-3", "learning_rate: 3e-3")
    edit_yaml(recipe_copy / "cap.yaml", "weight: 1.5, holdout", "weight: 1.5e0, holdout")
    assert main(["validate", str(recipe_copy)]) == 0, capsys.readouterr().err


def test_validate_cli_exit_code_and_no_traceback(recipe_copy):
    edit_yaml(recipe_copy / "cap.yaml", "max_steps: 240", "max_stepz: 240")
    result = cli("validate", str(recipe_copy))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cap.yaml: max_stepz: unknown key" in lines[0] and "max_steps" in lines[0]


def test_script_reports_bad_yaml_in_one_line(recipe_copy):
    import subprocess
    import sys

    edit_yaml(recipe_copy / "cap.yaml", "seq_length: 128", "seq_length: [128]")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--config", str(recipe_copy / "cap.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cap.yaml: seq_length: expected int" in result.stderr


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"], ids=["zero-bytes", "blank-lines"])
@pytest.mark.parametrize("where", ["file", "folder"])
def test_validate_refuses_an_empty_data_file_before_any_step(recipe_copy, capsys, content, where):
    """A file with no rows would pass validate and stop the data step after the tokenizer is trained."""
    if where == "file":
        empty = recipe_copy / "data" / "fi.jsonl"
    else:  # a source that names a folder: every file in it is read
        (recipe_copy / "data" / "fi").mkdir()
        (recipe_copy / "data" / "fi.jsonl").rename(recipe_copy / "data" / "fi" / "a.jsonl")
        empty = recipe_copy / "data" / "fi" / "b.jsonl"
        edit_yaml(recipe_copy / "cap.yaml", "path: data/fi.jsonl", "path: data/fi")
    empty.write_bytes(content)
    assert main(["validate", str(recipe_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"cap.yaml: mixture[1].path: empty data file {empty} (no rows)"), err


def test_run_refuses_a_code_suite_without_the_opt_in_before_any_step(recipe_copy, tmp_path, capsys, monkeypatch):
    """The eval stage's code suite runs model-written programs only with the opt-in: a run without it would train
    every stage first and stop there; it stops before the first step, naming the stage and the variable."""
    monkeypatch.delenv("AURORA_M_ALLOW_CODE_EXECUTION", raising=False)
    run = tmp_path / "run"
    assert main(["run", str(recipe_copy), "--output-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{recipe_copy / 'eval.yaml'}: AURORA_M_ALLOW_CODE_EXECUTION: stage eval runs the code suite" in err
    assert len(err.splitlines()) == 1 and not (run / "cap").exists()
    # a run of stages that do not evaluate code needs no opt-in (checked without running them: --stages eval
    # with the code suite off is refused for another reason, its inputs)
    edit_yaml(recipe_copy / "eval.yaml", "suites: [perplexity, code, harness, safety]", "suites: [perplexity]")
    assert main(["run", str(recipe_copy), "--output-dir", str(run), "--stages", "eval"]) == 2
    assert "AURORA_M_ALLOW_CODE_EXECUTION" not in capsys.readouterr().err


def test_validate_checks_a_stated_max_steps_against_the_accelerate_configs_ranks(capsys):
    """The tiny CAP states max_steps for one process: under multi_gpu.yaml (8 processes) each step would train 8x
    the budget; validate says so from the config alone, as the launch would after the data step."""
    tiny = str(ROOT / "recipes" / "aurora-m-tiny")
    assert main(["validate", tiny, "--accelerate-config", "cap=single_gpu"]) == 0
    capsys.readouterr()
    assert main(["validate", tiny, "--accelerate-config", "cap=multi_gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cap.yaml: max_steps: 240 disagrees with the token budget" in err and "x 8 ranks" in err, err
