"""A variant of a run, as its ``summary.json`` records it, gathered for the card and the export (the publish
stage's runner). Everything a card says comes from the run folder: the stage YAMLs as run (with their
command-line overrides), each stage's model folder, dataset report and log, and the evaluation files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import RunLayout, StageDir
from ..overrides import did_you_mean
from .arguments import HUB_ID, PublishArguments
from .export import LineageStep, Variant, export_variant

logger = logging.getLogger(__name__)


def hub_target(publish_args: PublishArguments, recipe: str, variant: str) -> tuple[str, str | None]:
    """(repo id, branch) of a variant: NAMESPACE/VARIANT on main, or one repo with a branch per variant."""
    if publish_args.hub_layout == "branch_per_variant":
        return f"{publish_args.hub_namespace}/{publish_args.hub_repo or recipe}", variant
    return f"{publish_args.hub_namespace}/{variant}", None


def stage_config(layout: RunLayout, summary: dict, stage: str) -> dict:
    """A stage's YAML as the run saved it, with the command-line overrides it ran with ({} when unreadable)."""
    from ..overrides import overrides_to_dict, read_yaml

    entry = next((s for s in summary["stages"] if s["name"] == stage), None)
    if entry is None:
        return {}
    try:
        config = read_yaml(layout.recipe_copy / entry["config"])
    except RecipeError as err:
        logger.warning("%s: %s (the card leaves out what it would have said)", stage, err)
        return {}
    return {**config, **overrides_to_dict(summary.get("overrides", {}).get(stage))}


def _is_hub_id(value) -> bool:
    """A Hub model id, not a local folder (a run's model_name_or_path may be either)."""
    return isinstance(value, str) and bool(HUB_ID.match(value)) and not Path(value).exists()


def summary_variant(layout: RunLayout, summary: dict, name: str) -> dict:
    """The entry of variant ``name`` in a run's summary.json; one line naming the variants there otherwise."""
    variants = {v["name"]: v for v in summary["variants"]}
    if name not in variants:
        raise RecipeError(
            layout.summary,
            "variants",
            f"no variant {name!r}{did_you_mean(name, variants)} (variants: {', '.join(variants) or 'none'})",
        )
    return variants[name]


def variant_from_summary(layout: RunLayout, summary: dict, name: str, publish_args: PublishArguments) -> Variant:
    entry = summary_variant(layout, summary, name)
    results = layout.resolve(entry["eval_results"])
    if results is None or not results.is_file():
        raise RecipeError(
            layout.summary, f"variants.{name}.eval_results", "not evaluated yet: run the eval stage first"
        )
    recipe = summary["recipe"]
    repo_id, branch = hub_target(publish_args, recipe, name)
    lineage, base_model, parent = [], None, None
    for i, step in enumerate(entry["lineage"]):
        stage_dir = StageDir(layout.resolve(step["output_dir"]))
        data_dir = layout.resolve(step["data_dir"])
        config = stage_config(layout, summary, step["stage"])
        origin = config.get("model_name_or_path")
        if i == 0 and _is_hub_id(origin):
            starts_from, note = origin, "continued from the base model's weights"
        elif i == 0 and origin:
            starts_from, note = None, "continued from local weights that are not on the Hub"
        elif i == 0:
            patches = ", ".join(config.get("config_patches") or []) or "none"
            starts_from, note = (
                None,
                (
                    f"randomly initialised from the `{config.get('base_config', '?')}` config "
                    f"(patches: {patches}); no pretrained weights"
                ),
            )
        else:
            starts_from, note = parent, f"continued from `{parent}` ({config.get('init_from', 'weights')})"
        lineage.append(
            LineageStep(
                stage=step["stage"],
                kind=step["kind"],
                variant=step["variant"],
                description=step.get("description", ""),
                repo=hub_target(publish_args, recipe, step["variant"]),
                starts_from=starts_from,
                note=note,
                config=config,
                data_dir=str(data_dir) if data_dir.is_dir() else None,
                stage_dir=str(stage_dir.root),
            )
        )
        parent_repo, parent_branch = hub_target(publish_args, recipe, step["variant"])
        parent = f"{parent_repo}@{parent_branch}" if parent_branch else parent_repo
        if i == len(entry["lineage"]) - 2 and parent_repo != repo_id:
            base_model = parent_repo  # the parent variant's repo (a branch of this same repo cannot be named)
    if len(entry["lineage"]) == 1:
        base_model = lineage[0].starts_from
    eval_dir = layout.stage(entry["evaluated_by"])
    return Variant(
        name=name,
        stage=entry["stage"],
        recipe=recipe,
        model_dir=str(layout.resolve(entry["model_dir"])),
        eval_results=str(results),
        eval_dir=str(eval_dir.root),
        repo_id=repo_id,
        branch=branch,
        base_model=base_model,
        lineage=lineage,
        eval_config=stage_config(layout, summary, entry["evaluated_by"]),
    )


def publish_variant(
    layout: RunLayout,
    summary: dict,
    name: str,
    out_dir: str | Path,
    publish_args: PublishArguments | None = None,
    overwrite: bool = False,
) -> Path:
    """Export one variant of a run folder into ``out_dir`` (refusing a folder that is not an export of ours)."""
    publish_args = publish_args or PublishArguments()
    variant = variant_from_summary(layout, summary, name, publish_args)
    notes = {s["name"]: s.get("description", "") for s in summary["stages"]}
    variant.description = " ".join(x for x in (summary.get("description", ""), notes.get(variant.stage, "")) if x)
    out = export_variant(variant, publish_args, out_dir, overwrite=overwrite, run_root=layout.root)
    logger.info("%s: exported to %s", name, out)
    return out


def run_publish_step(ctx) -> list[Path]:
    """The pipeline's publish step: one export folder per evaluated variant, inside the stage folder."""
    (publish_args,) = ctx.parse()
    summary = read_json_or_none(ctx.run.summary)
    return [
        publish_variant(ctx.run, summary, name, ctx.dirs.export(name), publish_args, overwrite=True)
        for name in ctx.input_models
    ]
