"""A pretraining stage's own cleaning chain (``data.clean_pipeline``) run in this process on each mixture
source's first rows: the same reader (streamed, ``limit`` rows), length cap, language id, quality,
symbol/digit ratio, toxic words, held-out split, PII and the leakage check against the stage's contamination
sources; what each filter kept is read from datatrove's own counters. A leak stops the rehearsal as it stops
the data step, naming the rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..args import MixtureArguments

FILTERED = "filtered"  # under <rehearsal>/<stage>/: the cleaning chain's folders for the sample


def stage_mixture_arguments(stage, input_positions=None) -> MixtureArguments:
    from ..stage_checks import parse_stage

    parsed = parse_stage(
        stage.config,
        stage.kind,
        validate_only=True,
        has_model_input=bool(stage.inputs),
        input_positions=input_positions,
        engine=stage.engine,
    )
    return next(a for a in parsed if isinstance(a, MixtureArguments))


def clean_sample(stage, samples: dict, stage_out: Path, tokenizer_file: str, rows: int, input_positions=None) -> dict:
    """{source name: {"filters": {step: docs after it}, "dropped": {...}, "bytes_per_token": ..., ...}}."""
    from ..data.clean_pipeline import _clean_pipeline
    from ..data.contamination import TestPrompt, raise_on_hits
    from ..data.intake import Tally, _tokenizer
    from ..layout import DatasetDir
    from ..source_spec import PROSE_LANGUAGES, source_specs

    args = stage_mixture_arguments(stage, input_positions)
    args.keep_removed = False  # the sample's removed documents are counted, not kept
    args.heldout_blocks = 0  # held-out windows are a training-time monitor: nothing to rehearse on a few rows
    specs = source_specs(args.mixture, "mixture", stage.config)
    routes: dict[str, str] = {}
    for s in specs:
        if s.source_format.free_text and s.lang in PROSE_LANGUAGES:
            routes.setdefault(s.lang, s.name)
    prompts = []
    for (stage_name, key, name), (_, sample) in samples.items():
        if stage_name == stage.name and key == "contamination_sources":
            prompts += [TestPrompt(f"{name} row {i + 1}", p.strip()) for i, p in enumerate(sample.prompts)]
    d = DatasetDir(stage_out / FILTERED)
    tokenizer = _tokenizer(tokenizer_file)
    results = {}
    for spec in specs:
        steps = _clean_pipeline(spec, args, d, tokenizer_file, routes, stage.config, prompts)
        steps[0].limit = rows
        if hasattr(steps[0], "batch_size"):  # a streamed batch is read whole before the limit
            steps[0].batch_size = min(rows, steps[0].batch_size)
        started = time.monotonic()
        data = None
        for step in steps:
            data = step(data, rank=0, world_size=1)
        for _ in data:
            pass
        seconds = time.monotonic() - started
        tallies = {s.after: _total(s.stats, f"docs/{spec.name}") for s in steps if isinstance(s, Tally)}
        dropped = {k: int(v.total) for k, v in steps[0].stats.stats.items() if k.startswith("dropped")}
        _, sample = samples[(stage.name, "mixture", spec.name)]
        tokens = sum(len(e.ids) for e in tokenizer.encode_batch_fast(sample.texts, add_special_tokens=False))
        results[spec.name] = {
            "docs_read_by_reader": _total(steps[0].stats, "documents") or sample.usable_rows,
            "dropped_by_reader": dropped,
            "kept_after": tallies,
            "clean_seconds": round(seconds, 3),
            "bytes_per_token": round(sample.text_bytes / tokens, 3) if tokens else None,
        }
    raise_on_hits(d.leaks, prompts, stage.config)  # a held-out test prompt in the training text stops here
    return results


def _total(stats, key: str) -> int:
    """A datatrove counter's total (0 when the step never counted it)."""
    value = stats.stats.get(key)
    return int(value.total) if value is not None else 0
