"""``aurora-m publish RUN_DIR --variant NAME --out DIR``: export one variant of a finished run, if it is fresh.

Fresh means every step of the variant's lineage and of its evaluation has a marker, each ran on
the outputs that are there now (the fingerprints each marker recorded for its inputs are those
inputs' current ones: each run of a step gets a new run id), and, when the recipe folder the run
came from is still there, each is complete for that recipe as it is now (with the command-line
overrides each step last ran with).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import RunLayout
from ..locking import run_lock
from ..recipe import load_recipe, parse_stage
from .core import Pipeline

logger = logging.getLogger(__name__)


def stale_steps(layout: RunLayout, summary: dict, variant: dict) -> list[str]:
    """Why a variant cannot be published as it is ("cap/train ran on an older cap/data"), or nothing."""
    by_name = {s["name"]: s for s in summary["stages"]}
    names = [step["stage"] for step in variant["lineage"]]
    if variant.get("evaluated_by"):
        names.append(variant["evaluated_by"])
    problems = []
    markers = {}
    for name in names:
        for step in by_name[name]["steps"]:
            markers[f"{name}/{step['step']}"] = read_json_or_none(layout.stage(name).marker(step["step"]))
    for key, marker in markers.items():
        if not marker:
            problems.append(f"{key} has not completed")
            continue
        for upstream, run_id in marker.get("input_runs", {}).items():
            now = markers.get(upstream) or read_json_or_none(layout.stage(upstream.split("/")[0])
                                                             .marker(upstream.split("/")[1]))
            if not now or now.get("run_id") != run_id:
                problems.append(f"{key} ran on an older {upstream}")
    if not problems:
        problems += _stale_for_current_recipe(layout, summary, names)
    return problems


def _stale_for_current_recipe(layout: RunLayout, summary: dict, names: list[str]) -> list[str]:
    recipe_dir = Path(summary.get("recipe_dir", ""))
    if not (recipe_dir / "pipeline.yaml").is_file():
        logger.info("recipe folder %s is not here: checking the run folder's own records only", recipe_dir)
        return []
    try:
        recipe = load_recipe(recipe_dir, check_stages=False)
        pipeline = Pipeline(recipe, layout.root, targets=set())  # each stage as its markers say it ran
        return [f"{name}/{step} is stale for the recipe in {recipe_dir} (its configuration or data changed)"
                for name in names for step in recipe.stage(name).steps
                if pipeline.step_status(recipe.stage(name), step) == "stale"]
    except RecipeError as err:  # the recipe changed shape since: the run's own records must do
        logger.info("cannot compare with the recipe in %s (%s): checking the run folder's records only",
                    recipe_dir, err)
        return []


def publish_from_run(run_dir: str | Path, variant_name: str, out_dir: str | Path, overwrite: bool = False) -> Path:
    from ..hub.variants import publish_variant

    layout = RunLayout(run_dir)
    for folder in [Path(out_dir).resolve(), *Path(out_dir).resolve().parents]:
        if (folder / RunLayout.MARKER).is_file():
            raise RecipeError(out_dir, None, f"is inside the run folder {folder}, whose own stages write there: "
                                             f"choose a folder outside it")
    summary = read_json_or_none(layout.summary)
    if not summary:
        raise RecipeError(layout.summary, None, "not a run folder (no readable summary.json): run the pipeline first")
    variants = {v["name"]: v for v in summary["variants"]}
    if variant_name not in variants:
        raise RecipeError(layout.summary, "variants",
                          f"no variant {variant_name!r} (variants: {', '.join(variants) or 'none'})")
    with run_lock(layout.lock, "aurora-m publish"):
        problems = stale_steps(layout, summary, variants[variant_name])
        if problems:
            raise RecipeError(layout.summary, f"variants.{variant_name}",
                              f"not published: {'; '.join(problems)}; run `aurora-m run` on this folder first")
        publish_args = None
        for stage in summary["stages"]:
            if stage["kind"] == "publish":
                (publish_args,) = parse_stage(layout.recipe_copy / stage["config"], "publish")
        return publish_variant(layout, summary, variant_name, out_dir, publish_args, overwrite=overwrite)
