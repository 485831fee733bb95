"""``aurora-m publish``: push the run's export of a variant to the Hub (``--dry-run --out DIR``: write the exact
commit instead), or export a variant into a folder of its own (``--out DIR``); only a fresh variant.

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
from ..hub.variants import publish_variant, summary_variant
from ..io import read_json_or_none
from ..layout import RunLayout
from ..locking import run_lock
from ..recipe import load_recipe
from ..stage_checks import parse_stage
from .core import Pipeline

logger = logging.getLogger(__name__)


def stale_steps(layout: RunLayout, summary: dict, variant: dict, exported: bool = False) -> list[str]:
    """Why a variant cannot be published as it is ("cap/train ran on an older cap/data"), or nothing.
    ``exported``: its export folder is read too, so the publish stage that wrote it must be fresh."""
    by_name = {s["name"]: s for s in summary["stages"]}
    names = [step["stage"] for step in variant["lineage"]]
    if variant.get("evaluated_by"):
        names.append(variant["evaluated_by"])
    if exported and variant.get("published_by"):
        names.append(variant["published_by"])
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
            now = markers.get(upstream) or read_json_or_none(
                layout.stage(upstream.split("/")[0]).marker(upstream.split("/")[1])
            )
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
        return [
            f"{name}/{step} is stale for the recipe in {recipe_dir} (its configuration or data changed)"
            for name in names
            for step in recipe.stage(name).steps
            if pipeline.step_status(recipe.stage(name), step) == "stale"
        ]
    except RecipeError as err:  # the recipe changed shape since: the run's own records must do
        logger.info(
            "cannot compare with the recipe in %s (%s): checking the run folder's records only", recipe_dir, err
        )
        return []


def _checked(run_dir: str | Path, out_dir: str | Path | None) -> tuple[RunLayout, dict]:
    layout = RunLayout(run_dir)
    if out_dir is not None:
        for folder in [Path(out_dir).resolve(), *Path(out_dir).resolve().parents]:
            if (folder / RunLayout.MARKER).is_file():
                raise RecipeError(
                    out_dir,
                    None,
                    f"is inside the run folder {folder}, whose own stages write there: choose a folder outside it",
                )
    summary = read_json_or_none(layout.summary)
    if not summary:
        raise RecipeError(layout.summary, None, "not a run folder (no readable summary.json): run the pipeline first")
    return layout, summary


def _fresh(layout: RunLayout, summary: dict, name: str, exported: bool = False) -> None:
    problems = stale_steps(layout, summary, summary_variant(layout, summary, name), exported)
    if problems:
        raise RecipeError(
            layout.summary,
            f"variants.{name}",
            f"not published: {'; '.join(problems)}; run `aurora-m run` on this folder first",
        )


def variant_names(run_dir: str | Path, variant: str | None) -> list[str]:
    """``[variant]``, or (``None``: --all) every variant the run evaluated."""
    layout, summary = _checked(run_dir, None)
    if variant is not None:
        summary_variant(layout, summary, variant)
        return [variant]
    names = [v["name"] for v in summary["variants"] if v.get("evaluated_by")]
    if not names:
        raise RecipeError(layout.summary, "variants", "no evaluated variant: run the eval stage first")
    return names


def publish_from_run(run_dir: str | Path, variant_name: str, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Export one fresh variant of a run into ``out_dir`` (no push)."""
    layout, summary = _checked(run_dir, out_dir)
    summary_variant(layout, summary, variant_name)
    with run_lock(layout.lock, "aurora-m publish"):
        _fresh(layout, summary, variant_name)
        publish_args = None
        for stage in summary["stages"]:
            if stage["kind"] == "publish":
                (publish_args,) = parse_stage(layout.recipe_copy / stage["config"], "publish")
        return publish_variant(layout, summary, variant_name, out_dir, publish_args, overwrite=overwrite)


def export_of(layout: RunLayout, summary: dict, name: str) -> Path:
    """The export folder the run's publish stage wrote for a variant (what a push reads), checked fresh."""
    entry = summary_variant(layout, summary, name)
    if not entry.get("published_by"):
        raise RecipeError(
            layout.summary,
            f"variants.{name}",
            "no publish stage exports this variant: add one to pipeline.yaml (kind: publish, inputs: [eval])",
        )
    export = layout.stage(entry["published_by"]).export(name)
    if not export.is_dir():
        raise RecipeError(
            export, None, f"not exported yet: run `aurora-m run` (its {entry['published_by']} stage writes it)"
        )
    _fresh(layout, summary, name, exported=True)
    return export


def push_from_run(
    run_dir: str | Path,
    variant_name: str,
    *,
    dry_run: bool = False,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    **retry,
) -> tuple[list[str], str]:
    """Push (or with ``dry_run``, plan and write to ``out_dir``) the run's export of one variant.

    Returns (the operations, the commit URL or the dry-run folder). Never re-exports: the export folder
    written by the publish stage is read as it is.
    """
    from ..hub.push import plan_push, push, write_dry_run

    layout, summary = _checked(run_dir, out_dir)
    with run_lock(layout.lock, "aurora-m publish"):
        plan = plan_push(export_of(layout, summary, variant_name))
        if dry_run:
            where = str(write_dry_run(plan, out_dir, overwrite=overwrite)) if out_dir else ""
            return plan.operations(), where
        # the branch's content is replaced only with --overwrite: an --out folder has nothing to do with a push
        return plan.operations(), push(plan, overwrite=overwrite, **retry)
