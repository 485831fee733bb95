"""A variant of a run, as its ``summary.json`` records it, exported for the Hub (the publish stage's runner)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..args import PublishArguments
from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import RunLayout, StageDir
from .export import LineageStep, Variant, export_variant, repo_id

logger = logging.getLogger(__name__)


def variant_from_summary(layout: RunLayout, summary: dict, name: str, publish_args: PublishArguments) -> Variant:
    variants = {v["name"]: v for v in summary["variants"]}
    if name not in variants:
        raise RecipeError(layout.summary, "variants",
                          f"no variant {name!r} (variants: {', '.join(variants) or 'none'})")
    entry = variants[name]
    results = layout.resolve(entry["eval_results"])
    if results is None or not results.is_file():
        raise RecipeError(layout.summary, f"variants.{name}.eval_results",
                          "not evaluated yet: run the eval stage first")
    lineage, parent = [], publish_args.root_model
    for step in entry["lineage"]:
        stage_dir = StageDir(layout.resolve(step["output_dir"]))
        data_dir = layout.resolve(step["data_dir"])
        lineage.append(LineageStep(stage=step["stage"], kind=step["kind"], variant=step["variant"], starts_from=parent,
                                   data_dir=str(data_dir) if data_dir.is_dir() else None,
                                   loss_png=str(stage_dir.loss_png)))
        parent = repo_id(publish_args, step["variant"])
    eval_dir = layout.stage(entry["evaluated_by"])
    return Variant(name=name, stage=entry["stage"], model_dir=str(layout.resolve(entry["model_dir"])),
                   eval_results=str(results), lineage=lineage, perplexity_png=str(eval_dir.perplexity_png))


def publish_variant(layout: RunLayout, summary: dict, name: str, out_dir: str | Path,
                    publish_args: PublishArguments | None = None, overwrite: bool = False) -> Path:
    """Export one variant of a run folder into ``out_dir`` (refusing a folder that is not an export of ours)."""
    publish_args = publish_args or PublishArguments()
    variant = variant_from_summary(layout, summary, name, publish_args)
    notes = {s["name"]: s.get("description", "") for s in summary["stages"]}
    description = " ".join(x for x in (summary.get("description", ""), notes.get(variant.stage, "")) if x)
    out = export_variant(variant, publish_args, out_dir, summary["recipe"], description, overwrite=overwrite)
    logger.info("%s: exported to %s", name, out)
    return out


def run_publish_step(ctx) -> list[Path]:
    """The pipeline's publish step: one export folder per evaluated variant, inside the stage folder."""
    (publish_args,) = ctx.parse()
    summary = read_json_or_none(ctx.run.summary)
    return [publish_variant(ctx.run, summary, name, ctx.dirs.export(name), publish_args, overwrite=True)
            for name in ctx.input_models]
