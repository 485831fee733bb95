"""The harness suite runs the real lm-eval, offline, on a tiny GPTBigCode over the tiny recipe's own tasks."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace

import jinja2
import lm_eval
import pytest
import torch
import yaml

from aurora_m.errors import RecipeError
from aurora_m.evaluation.harness import lm_eval_logs, run_harness
from aurora_m.stage_checks import check_stage_config, parse_stage

from conftest import TINY, edit_yaml

TASKS = TINY / "lm_eval_tasks"
LANGUAGES = ("en", "fi", "hi", "ja", "vi")
ENTRY_KEYS = {"language", "metrics", "stderr", "main_metric", "n_samples", "num_fewshot"}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A randomly initialised tiny GPTBigCode (the tiny recipe's shape) and the tiny recipe's tokenizer."""
    from transformers import AutoModelForCausalLM

    from aurora_m.patches import apply_config_patches, load_base_config
    from aurora_m.tokenizer import cached_tokenizer

    mp = pytest.MonkeyPatch()
    mp.setenv("AURORA_M_CACHE", str(tmp_path_factory.mktemp("cache")))
    files = [str(TINY / "data" / f"{name}.jsonl") for name in (*LANGUAGES, "code")]
    tokenizer = cached_tokenizer(files, 4096)
    mp.undo()
    cap = yaml.safe_load((TINY / "cap.yaml").read_text("utf-8"))
    config = apply_config_patches(load_base_config(cap["base_config"]), cap["config_patches"], tokenizer=tokenizer)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


@pytest.fixture(scope="module")
def recipe_args():
    """The tiny recipe's eval stage as the pipeline parses it."""
    eval_args = parse_stage(TINY / "eval.yaml", "eval", validate_only=True)[0]
    assert "harness" in eval_args.suites
    return eval_args


@pytest.fixture(scope="module")
def context():
    return {"cache": {}}  # one TaskManager for the module, as the eval stage keeps one for all its variants


@pytest.fixture(scope="module")
def recipe_result(tiny_lm, recipe_args, context):
    model, tokenizer = tiny_lm
    return run_harness(model, tokenizer, recipe_args, TINY / "eval.yaml", **context)


def rows(language: str) -> list[dict]:
    return [json.loads(line) for line in (TASKS / "data" / f"{language}.jsonl").read_text("utf-8").splitlines()]


def test_the_recipe_tasks_run_offline_with_the_documented_schema(recipe_result, recipe_args):
    result = recipe_result
    json.dumps(result, allow_nan=False)  # a plain JSON document
    assert result["suite"] == "harness" and result["lm_eval_version"] == lm_eval.__version__
    assert set(result["tasks"]) == {f"aurora_mc_{lang}" for lang in LANGUAGES}
    for name, entry in result["tasks"].items():
        language = name.rsplit("_", 1)[1]
        assert set(entry) == ENTRY_KEYS, name
        assert entry["language"] == language
        assert entry["n_samples"] == len(rows(language)) >= 8
        assert set(entry["metrics"]) == {"acc", "acc_norm"} and entry["main_metric"] == "acc_norm"
        for metric, value in entry["metrics"].items():
            assert round(value * entry["n_samples"]) == pytest.approx(value * entry["n_samples"])  # k of n right
            assert entry["stderr"][metric] is None or entry["stderr"][metric] >= 0
        assert entry["num_fewshot"] == (2 if language == "en" else 0)  # the recipe's {task, num_fewshot} entry
    assert set(result["by_language"]) == set(recipe_args.lm_eval_tasks)
    for language in LANGUAGES:
        mains = [e["metrics"][e["main_metric"]] for e in result["tasks"].values() if e["language"] == language]
        assert result["by_language"][language] == pytest.approx(sum(mains) / len(mains))


def lm_eval_accuracy(model, tokenizer, language: str) -> float:
    """The task scored without lm-eval: the choice with the highest summed log-probability after the prompt, the
    pair encoded as lm-eval encodes it (the whole string, then the context's tokens cut off the front)."""
    spec = yaml.safe_load((TASKS / f"aurora_mc_{language}.yaml").read_text("utf-8"))
    prompt = jinja2.Template(spec["doc_to_text"])
    pairs = []  # (tokens of context + " " + choice, tokens of the context alone)
    for row in rows(language):
        context = prompt.render(**row)
        n_context = len(tokenizer.encode(context, add_special_tokens=False))
        pairs += [(tokenizer.encode(f"{context} {c}", add_special_tokens=False), n_context) for c in row["choices"]]
    width = max(len(ids) for ids, _ in pairs)
    batch = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in pairs])  # right padding: causal, unseen
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in pairs])
    with torch.no_grad():
        logprobs = model(batch, attention_mask=mask).logits.float().log_softmax(-1)
    scores = [sum(logprobs[b, i - 1, ids[i]].item() for i in range(n, len(ids))) for b, (ids, n) in enumerate(pairs)]
    right = 0
    for r, row in enumerate(rows(language)):
        mine = scores[r * len(row["choices"]) : (r + 1) * len(row["choices"])]
        right += max(range(len(mine)), key=mine.__getitem__) == row["answer"]
    return right / len(rows(language))


def test_accuracy_is_this_model_on_these_rows(recipe_result, tiny_lm):
    """lm-eval scored the model and tokenizer it was handed, on the in-repo rows (0-shot languages)."""
    model, tokenizer = tiny_lm
    mine = {language: lm_eval_accuracy(model, tokenizer, language) for language in ("fi", "hi", "ja", "vi")}
    assert len(set(mine.values())) > 1, mine  # not all zero: the comparison below can tell scorers apart
    assert {lang: recipe_result["tasks"][f"aurora_mc_{lang}"]["metrics"]["acc"] for lang in mine} == pytest.approx(
        mine
    )


def test_a_tag_gives_each_task_it_holds_and_lm_eval_logs_through_ours(tiny_lm, recipe_args, context):
    model, tokenizer = tiny_lm
    args = replace(recipe_args, lm_eval_tasks={"mixed": ["aurora_mc"]}, lm_eval_limit=2)
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    ours = logging.getLogger("aurora_m")
    saved_level, lm_logger = ours.level, logging.getLogger("lm_eval")
    before = (lm_logger.level, lm_logger.propagate, list(lm_logger.handlers))
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    try:
        result = run_harness(model, tokenizer, args, TINY / "eval.yaml", **context)
    finally:
        ours.removeHandler(handler)
        ours.setLevel(saved_level)
    assert set(result["tasks"]) == {f"aurora_mc_{lang}" for lang in LANGUAGES}  # the tag's tasks
    for entry in result["tasks"].values():
        assert entry["part_of"] == "aurora_mc" and entry["language"] == "mixed" and entry["n_samples"] == 2
    mains = [e["metrics"][e["main_metric"]] for e in result["tasks"].values()]
    assert set(result["by_language"]) == {"mixed"} and result["by_language"]["mixed"] == pytest.approx(
        sum(mains) / len(mains)
    )
    assert result["limit"] == 2
    # lm-eval's progress notes and the warnings this call causes by design come through as debug lines
    from_lm_eval = [r for r in records if r.name.startswith("lm_eval")]
    assert from_lm_eval and [r.getMessage() for r in from_lm_eval if r.levelno != logging.DEBUG] == []
    assert any("already-initialized model" in r.getMessage() for r in from_lm_eval)
    assert any(r.name == "aurora_m.evaluation.harness" and "aurora_mc_fi" in r.getMessage() for r in records)
    assert (lm_logger.level, lm_logger.propagate, list(lm_logger.handlers)) == before  # left as it was


def test_a_real_lm_eval_warning_stays_a_warning():
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    ours = logging.getLogger("aurora_m")
    ours.addHandler(handler)
    try:
        with lm_eval_logs():
            logging.getLogger("lm_eval.evaluator").warning("task %s has no test split", "x")
            logging.getLogger("lm_eval.evaluator").info("building contexts")  # below our level: not shown
    finally:
        ours.removeHandler(handler)
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.WARNING, "task x has no test split")]


def test_an_unknown_task_is_one_line_naming_the_key(tiny_lm, recipe_args, context):
    model, tokenizer = tiny_lm
    args = replace(recipe_args, lm_eval_tasks={"en": ["aurora_mc_en"], "fi": ["aurora_mc_en_fi", "aurora_mc_fii"]})
    with pytest.raises(RecipeError) as err:
        run_harness(model, tokenizer, args, TINY / "eval.yaml", **context)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{TINY / 'eval.yaml'}: lm_eval_tasks.fi: unknown lm-eval task 'aurora_mc_en_fi'")
    assert "did you mean" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{task: aurora_mc_en, num_fewshot: 2}",
            "{task: aurora_mc_en, shots: 2}",
            "eval.yaml: lm_eval_tasks.en[0]: expected a task name or {task: NAME, num_fewshot: K}",
        ),
        (
            "{task: aurora_mc_en, num_fewshot: 2}",
            "{task: aurora_mc_en, num_fewshot: -1}",
            "eval.yaml: lm_eval_tasks.en[0].num_fewshot: expected an integer >= 0, got -1",
        ),
        (
            "fi: [aurora_mc_fi]",
            "fi: [aurora_mc_hi]",
            "eval.yaml: lm_eval_tasks.hi[0]: 'aurora_mc_hi' is already listed at lm_eval_tasks.fi[0]",
        ),
        ("vi: [aurora_mc_vi]", "vi: []", "eval.yaml: lm_eval_tasks.vi: expected a non-empty list"),
        (
            "lm_eval_include_path: lm_eval_tasks",
            "lm_eval_include_path: lm_eval_taks",
            "eval.yaml: lm_eval_include_path: lm_eval_taks is not a folder",
        ),
        ("lm_eval_include_path: lm_eval_tasks", "lm_eval_include_path: ../..", "is outside the recipe folder"),
    ],
)
def test_validation_refuses_bad_harness_keys_in_one_line(recipe_copy, old, new, expected):
    edit_yaml(recipe_copy / "eval.yaml", old, new)
    with pytest.raises(RecipeError) as err:
        check_stage_config(recipe_copy / "eval.yaml", "eval")
    assert "\n" not in str(err.value) and expected in str(err.value)


def test_validation_names_the_extra_when_lm_eval_is_missing(recipe_copy, monkeypatch):
    check_stage_config(recipe_copy / "eval.yaml", "eval")  # the recipe as shipped is fine
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what `import lm_eval` meets where it is not installed
    with pytest.raises(RecipeError) as err:
        check_stage_config(recipe_copy / "eval.yaml", "eval")
    assert "eval.yaml: suites: the harness suite needs lm-eval" in str(err.value)
    assert "pip install 'aurora-m[eval]'" in str(err.value)


def test_the_real_recipe_names_tasks_lm_eval_has(recipe_args, context):
    """The 15B recipe's lists are lm-eval's own task names (checked offline: names, not the Hub datasets)."""
    from aurora_m.evaluation.harness import check_tasks, requested_tasks

    file = TINY.parent / "aurora-m-15b" / "eval.yaml"
    config = yaml.safe_load(file.read_text("utf-8"))
    assert "harness" in config["suites"]
    requests = requested_tasks(config["lm_eval_tasks"], file, config.get("lm_eval_num_fewshot"))
    assert {r.language for r in requests} == set(LANGUAGES)
    # the tiny recipe's TaskManager indexes lm-eval's own tasks too: reuse it rather than index them again
    assert (
        check_tasks(
            replace(
                recipe_args,
                lm_eval_tasks=config["lm_eval_tasks"],
                lm_eval_num_fewshot=config.get("lm_eval_num_fewshot"),
            ),
            TINY / "eval.yaml",
            context["cache"],
        )
        == requests
    )
    shots = {r.name: r.num_fewshot for r in requests}
    assert shots["arc_hi"] is None and shots["hellaswag"] == 8 and shots["mmlu"] == 5  # the paper: 0-shot, 8-shot
