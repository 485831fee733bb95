"""Per-language perplexity of each model variant on held-out text, via ``Trainer.evaluate``.

Held-out text is packed into blocks of ``seq_length`` tokens exactly as training data is, and
perplexity is ``exp`` of the mean token loss (``evaluate``'s perplexity metric would need the Hub).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

from ..args import EvalArguments, SourceSpec
from ..data.mixture import pack_wrapped, packed_collator
from ..data.sources import load_source
from ..errors import RecipeError
from ..io import atomic_dir, write_json
from ..layout import StageDir
from ..logs import log_through_logging
from ..plots import plot_perplexity
from ..recipe import VARIANT_NAME

logger = logging.getLogger(__name__)


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


def heldout_texts(eval_args: EvalArguments, config_file) -> tuple[dict[str, list[str]], list]:
    """Held-out documents per language, read once for every variant."""
    texts, reports = {}, []
    for raw in eval_args.perplexity_sources:
        spec = SourceSpec(**raw)
        docs, report = load_source(spec, str(config_file), "perplexity_sources")
        texts[spec.name] = list(docs["text"])
        reports.append(asdict(report))
    return texts, reports


def heldout_blocks(texts: dict[str, list[str]], eval_args: EvalArguments, tokenizer, config_file) -> dict:
    """Pack each language's text with this model's tokenizer, as training data is packed."""
    from datasets import Dataset

    blocks = {}
    for lang, docs in texts.items():
        ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
        packed, _ = pack_wrapped(ids, eval_args.seq_length, tokenizer.eos_token_id)
        if eval_args.max_eval_blocks:
            packed = packed[: eval_args.max_eval_blocks]
        if len(packed) == 0:
            raise RecipeError(config_file, f"perplexity_sources[{lang}]",
                              f"held-out text is shorter than one block of {eval_args.seq_length} tokens")
        blocks[lang] = Dataset.from_dict({"input_ids": packed})
    return blocks


def evaluate_perplexity(eval_args: EvalArguments, training_args, config_file="<stage config>") -> dict:
    """Write each variant's results, all results and the perplexity plot into the stage folder; return them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    dirs = StageDir(training_args.output_dir)
    models = parse_models(eval_args.eval_models, config_file)
    texts, reports = heldout_texts(eval_args, config_file)
    all_results = {}
    for name, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        blocks = heldout_blocks(texts, eval_args, tokenizer, config_file)
        trainer = Trainer(model=model, args=training_args, data_collator=packed_collator)
        log_through_logging(trainer)
        metrics = trainer.evaluate(eval_dataset=blocks)
        losses = {lang: metrics[f"eval_{lang}_loss"] for lang in blocks}
        result = {
            "variant": name,
            "model": os.path.relpath(path, dirs.root.parent),  # relative: the run folder can move
            "perplexity": {lang: math.exp(loss) for lang, loss in losses.items()},
            "loss": losses,
            "eval_tokens": {lang: len(ds) * eval_args.seq_length for lang, ds in blocks.items()},
            "sources": reports,
        }
        if trainer.is_world_process_zero():
            results_file = dirs.results(name)
            with atomic_dir(results_file.parent) as tmp:
                write_json(tmp / results_file.name, result)
        all_results[name] = result
        logger.info("%s: %s", name, ", ".join(f"{k} {v:.1f}" for k, v in result["perplexity"].items()))
    if training_args.process_index == 0:
        write_json(dirs.all_results, all_results)
        plot_perplexity({n: r["perplexity"] for n, r in all_results.items()}, dirs.perplexity_png,
                        "held-out perplexity per language")
    return all_results


def run_eval_step(ctx) -> dict:
    """The pipeline's eval step: every input model, by its variant name."""
    models = [f"{variant}={path}" for variant, path in ctx.input_models.items()]
    eval_args, training_args = ctx.parse("--eval_models", *models)
    return evaluate_perplexity(eval_args, training_args, ctx.config)
