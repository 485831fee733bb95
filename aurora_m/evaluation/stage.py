"""The eval stage: every variant through every suite the stage names, one results file per variant per suite,
then the reports across variants (results table, forgetting, safety transfer).

Suites (``suites:``): ``perplexity`` (held-out text per language), ``code`` (HumanEval / MBPP pass@k in the
sandbox), ``harness`` (lm-eval tasks per language), ``safety`` (refusal per harm category per language,
attacks, over-refusal). A variant's model is loaded once for all its suites. ``VARIANT/<suite>.json`` holds a
suite's result; ``VARIANT/results.json`` all of them merged (the publishing stage reads it).
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from ..args import EvalArguments
from ..errors import RecipeError
from ..io import write_json
from ..layout import StageDir
from ..recipe import VARIANT_NAME
from .reports import write_reports

logger = logging.getLogger(__name__)

SUITES = {  # name -> "module:function(model, tokenizer, eval_args, config_file, **context) -> dict"
    "perplexity": "aurora_m.evaluation.perplexity:perplexity_suite",
    "code": "aurora_m.evaluation.code.suite:run_code",
    "harness": "aurora_m.evaluation.harness:run_harness",
    "safety": "aurora_m.evaluation.safety.suite:run_safety",
}


def suite_runner(name: str, config_file):
    if name not in SUITES:
        raise RecipeError(config_file, "suites", f"unknown suite {name!r}: expected some of {', '.join(SUITES)}")
    module, _, function = SUITES[name].partition(":")
    return getattr(importlib.import_module(module), function)


def parse_models(entries: list[str], config_file) -> dict[str, str]:
    models = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        name, path = (name, path) if sep else (Path(entry).name, entry)
        if not VARIANT_NAME.match(name):
            raise RecipeError(config_file, "eval_models", f"{name!r} is not a usable variant name (a Hub repo name: "
                                                          f"letters, digits, '-', '_', '.'; no '/' or '..')")
        if name in models:
            raise RecipeError(config_file, "eval_models", f"two models are named {name!r}: name each NAME=PATH once")
        if not Path(path, "config.json").is_file():
            raise RecipeError(config_file, "eval_models", f"{path} is not a model folder (no config.json)")
        models[name] = path
    if not models:
        raise RecipeError(config_file, "eval_models", "no models to evaluate")
    return models


def evaluate_variants(eval_args: EvalArguments, training_args, config_file="<stage config>") -> dict:
    """Run the suites on every variant; write the results files and the reports; return variant -> results."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dirs = StageDir(training_args.output_dir)
    models = parse_models(eval_args.eval_models, config_file)
    runners = {name: suite_runner(name, config_file) for name in dict.fromkeys(eval_args.suites)}
    if not runners:
        raise RecipeError(config_file, "suites", "empty: name at least one of " + ", ".join(SUITES))
    context = {"batch_size": training_args.per_device_eval_batch_size, "seed": training_args.seed, "cache": {}}
    if "harness" in runners:  # an unknown task name fails before any model loads
        from .harness import check_tasks

        check_tasks(eval_args, config_file, context["cache"])
    main = training_args.process_index == 0
    all_results = {}
    for variant, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).to(training_args.device)
        merged = {"variant": variant, "model": os.path.relpath(path, dirs.root.parent)}  # the run folder can move
        for suite, run in runners.items():
            logger.info("%s: %s", variant, suite)
            result = run(model, tokenizer, eval_args, config_file, **context)
            if main:
                write_json(dirs.suite_results(variant, suite), {"variant": variant, **result})
            merged[suite] = result
        # the card reads these at the top level (per-language perplexity and the tokens behind it)
        if "perplexity" in merged:
            suite = merged.pop("perplexity")
            merged.update(perplexity=suite["perplexity"], eval_tokens=suite["eval_tokens"], perplexity_suite=suite)
        if main:
            write_json(dirs.results(variant), merged)
        all_results[variant] = merged
        del model
    if main:
        write_json(dirs.all_results, all_results)
        write_reports(all_results, dirs)
    return all_results


def run_eval_step(ctx) -> dict:
    """The pipeline's eval step: every input model, by its variant name."""
    models = [f"{variant}={path}" for variant, path in ctx.input_models.items()]
    eval_args, training_args = ctx.parse("--eval_models", *models)
    return evaluate_variants(eval_args, training_args, ctx.config)
