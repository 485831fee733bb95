"""The eval stage: every variant through every suite the stage names, one results file per variant per suite,
then the reports across variants (results table, forgetting, safety transfer).

Suites (``suites:``): ``perplexity`` (held-out text per language), ``code`` (HumanEval / MBPP pass@k in the
sandbox), ``harness`` (lm-eval tasks per language), ``safety`` (refusal per harm category per language,
attacks, over-refusal). A variant's model is loaded once for all its suites. ``VARIANT/<suite>.json`` holds a
suite's result; ``VARIANT/results.json`` all of them merged (the publishing stage reads it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..errors import RecipeError
from ..io import atomic_dir, write_json
from ..layout import VARIANT_NAME, StageDir
from ..locking import run_lock
from .arguments import EvalArguments
from .reports import write_reports
from .suites import SUITES

logger = logging.getLogger(__name__)


def suite_runner(name: str, config_file):
    if name not in SUITES:
        raise RecipeError(config_file, "suites", f"unknown suite {name!r}: expected some of {', '.join(SUITES)}")
    return SUITES[name].load("runner")


def parse_models(entries: list[str], config_file) -> dict[str, str]:
    models = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        name, path = (name, path) if sep else (Path(entry).name, entry)
        if not VARIANT_NAME.match(name):
            raise RecipeError(
                config_file,
                "eval_models",
                f"{name!r} is not a usable variant name (a Hub repo name: "
                f"letters, digits, '-', '_', '.'; no '/' or '..')",
            )
        if name in models:
            raise RecipeError(config_file, "eval_models", f"two models are named {name!r}: name each NAME=PATH once")
        if not Path(path, "config.json").is_file():
            raise RecipeError(config_file, "eval_models", f"{path} is not a model folder (no config.json)")
        models[name] = path
    if not models:
        raise RecipeError(config_file, "eval_models", "no models to evaluate")
    return models


def evaluate_variants(eval_args: EvalArguments, training_args, config_file="<stage config>") -> dict:
    """Run the suites on every variant; write the results files and the reports; return variant -> results.
    The main process holds the stage folder's evaluation lock: a second evaluation into it stops at once."""
    with contextlib.ExitStack() as stack:
        if training_args.process_index == 0:
            stack.enter_context(run_lock(StageDir(training_args.output_dir).eval_lock, "evaluation"))
        return _evaluate_variants(eval_args, training_args, config_file)


def _evaluate_variants(eval_args: EvalArguments, training_args, config_file) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dirs = StageDir(training_args.output_dir)
    models = parse_models(eval_args.eval_models, config_file)
    runners = {name: suite_runner(name, config_file) for name in dict.fromkeys(eval_args.suites)}
    if not runners:
        raise RecipeError(config_file, "suites", "empty: name at least one of " + ", ".join(SUITES))
    context = {"batch_size": training_args.per_device_eval_batch_size, "seed": training_args.seed, "cache": {}}
    prepare_suites(eval_args, config_file, context["cache"], list(runners))
    main = training_args.process_index == 0
    all_results = {}
    for variant, path in models.items():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).to(training_args.device)
        except (OSError, ValueError, RuntimeError) as err:  # a truncated safetensors file, no tokenizer, ...
            raise RecipeError(
                config_file,
                "eval_models",
                f"{variant}={path}: cannot load the model or its tokenizer ({' '.join(str(err).split())[:300]})",
            ) from None
        merged = {"variant": variant, "model": os.path.relpath(path, dirs.root.parent)}  # the run folder can move
        for suite, run in runners.items():
            logger.info("%s: %s", variant, suite)
            merged[suite] = run(model, tokenizer, eval_args, config_file, **context)
        suites = {suite: merged[suite] for suite in runners}
        # the card reads these at the top level (per-language perplexity and the tokens behind it)
        if "perplexity" in merged:
            suite = merged.pop("perplexity")
            merged.update(perplexity=suite["perplexity"], eval_tokens=suite["eval_tokens"], perplexity_suite=suite)
        if main:  # the variant's folder swapped in whole: no suite file of an earlier run is left beside these
            with atomic_dir(dirs.results(variant).parent) as tmp:
                for suite, result in suites.items():
                    write_json(tmp / dirs.suite_results(variant, suite).name, {"variant": variant, **result})
                write_json(tmp / dirs.results(variant).name, merged)
        all_results[variant] = merged
        del model
    if main:
        write_json(dirs.all_results, all_results)
        write_reports(all_results, dirs)
    return all_results


def prepare_suites(eval_args: EvalArguments, config_file, cache: dict, suites: list[str]) -> None:
    """What a suite would otherwise find wrong only after models load and earlier suites run (the code opt-in,
    the problem sets, lm-eval task names, the safety judge): each suite's ``prepare``, results kept in ``cache``."""
    for name in suites:
        if prepare := SUITES[name].load("prepare"):
            prepare(eval_args, config_file, cache)


def run_eval_step(ctx) -> dict:
    """The pipeline's eval step: every input model, by its variant name."""
    models = [f"{variant}={path}" for variant, path in ctx.input_models.items()]
    eval_args, training_args = ctx.parse("--eval_models", *models)
    return evaluate_variants(eval_args, training_args, ctx.config)
