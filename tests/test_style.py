"""What the code promises about itself: logs not prints, one module for run-folder names, scripts like TRL's."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OFFLINE, ROOT

PACKAGE = ROOT / "aurora_m"
LAYOUT = PACKAGE / "layout.py"


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def modules_scripts_and_benchmarks():
    """The library and what sits on it: scripts and benchmarks follow the library's layout rules too."""
    return modules() + sorted([*(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def string_constants(tree) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_the_library_logs_and_only_the_cli_prints():
    printing = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # the CLI's result lines, and the one error line every entry point ends with
    assert {p.split(":")[0] for p in printing} <= {"aurora_m/cli.py", "aurora_m/errors.py"}, printing


def test_no_module_but_the_layout_spells_a_run_folder_name():
    layout_names = {
        s
        for s in string_constants(ast.parse(LAYOUT.read_text()))
        if " " not in s and any(c.isalpha() for c in s) and ("." in s or s.isidentifier()) and len(s) < 40
    }
    file_names = {s for s in layout_names if "." in s}  # results.json, .train-state.json, loss.png, ...
    folder_names = layout_names - file_names  # model, data, train, tokenizer, recipe, assets
    assert {"summary.json", "results.json", "loss.png", "mixture.json"} <= file_names
    assert {"model", "data", "train", "tokenizer"} <= folder_names
    offenders = []
    for path in modules_scripts_and_benchmarks():
        if path == LAYOUT:
            continue
        tree = ast.parse(path.read_text())
        for name in set(string_constants(tree)) & file_names:
            offenders.append(f"{path.relative_to(ROOT)} spells {name!r}")
        if path not in modules():  # a script's or benchmark's own scratch folders may share a generic word
            continue
        for node in ast.walk(tree):  # folder / "model": a path built from a run-folder name
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in folder_names
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} joins {node.right.value!r}")
    assert not offenders, offenders


SCRIPT_KEYS = {
    "pretrain.py": ["--mixture", "--train_tokens", "--learning_rate", "--config_patches", "--use_peft", "--lora_r"],
    "sft.py": ["--sft_sources", "--max_length", "--learning_rate", "--use_peft"],
    "run_eval.py": ["--perplexity_sources", "--eval_models", "--per_device_eval_batch_size"],
    "data.py": ["--mixture", "--train_tokens", "--max_doc_chars", "--temperature", "--replay_share"],
    "publish.py": ["--variant", "--out", "--overwrite"],
    "nanotron_check.py": ["--output-dir", "--tp", "--steps", "--atol"],
}


def test_every_script_help_lists_its_stage_keys_with_help_text():
    assert {p.name for p in (ROOT / "scripts").glob("*.py")} == set(SCRIPT_KEYS)
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / name), "--help"],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **OFFLINE},
        )
        for name in SCRIPT_KEYS
    }
    helps = {}
    for name, proc in procs.items():
        helps[name], err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err[-2000:])
        for key in SCRIPT_KEYS[name]:
            assert key in helps[name], (name, key)
    assert "Token budget of the stage's dataset" in helps["pretrain.py"]  # the dataclass help text is shown
    assert "LoRA R value" in helps["sft.py"]  # trl.ModelConfig's own keys and help


@pytest.mark.parametrize("script", sorted(SCRIPT_KEYS))
def test_no_script_shadows_an_installed_package(script):
    """A script's folder is first on sys.path when it runs: `evaluate.py` there broke `import evaluate`."""
    stem = Path(script).stem
    spec = importlib.util.find_spec(stem)
    assert spec is None, f"scripts/{script} would shadow the installed {stem!r} ({spec.origin})"


def test_the_evaluation_script_leaves_import_evaluate_to_the_package():
    probe = (
        "import runpy, sys; sys.argv = ['run_eval.py', '--help']; sys.path.insert(0, 'scripts'); "
        "import evaluate; print(evaluate.__file__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.parent.name in ("site-packages", "dist-packages"), result.stdout
