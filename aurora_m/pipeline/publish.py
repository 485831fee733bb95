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
from ..layout import ExportDir, RunLayout, owning_folder
from ..locking import run_lock
from ..recipe import load_recipe
from ..roots import PIPELINE_FILE
from ..stage_checks import parse_stage
from .core import Pipeline
from .outputs import output_problem
from .summary import build_summary

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
        if gone := output_problem(marker.get("outputs"), layout.root):
            problems.append(f"{key}: {gone} since it ran")
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
    owner = owning_folder(out_dir, include_self=False) if out_dir is not None else None
    if owner is None and out_dir is not None and (Path(out_dir) / RunLayout.MARKER).is_file():
        owner = (Path(out_dir).resolve(), "run folder")
    if owner:  # a run's stages write their folders; an export is pushed as written (and replaced whole)
        raise RecipeError(out_dir, None, f"is inside the {owner[1]} {owner[0]}: choose a folder outside it")
    return layout, recorded_summary(layout)


def recorded_summary(layout: RunLayout) -> dict:
    """The run's stages and variants as its own records say (the recipe copy it ran and the step markers), in
    summary.json's shape. summary.json itself is a report: an edit of it never decides what gets exported."""
    run = read_json_or_none(layout.marker)
    copy = layout.recipe_copy / PIPELINE_FILE
    if not run or not copy.is_file():
        raise RecipeError(
            layout.root,
            None,
            f"not a run folder (no readable {RunLayout.MARKER} and {layout.rel(copy)}): "
            "run `aurora-m run RECIPE_DIR --output-dir RUN_DIR` first",
        )
    try:
        recipe = load_recipe(layout.recipe_copy, check_stages=False)
    except RecipeError as err:
        raise RecipeError(
            copy, None, f"the run's copy of its recipe does not load ({err.message}): run the recipe again"
        ) from None

    def marker(stage, step):
        return read_json_or_none(layout.stage(stage.name).marker(step)) or {}

    overrides = {s.name: marker(s, s.steps[-1]).get("overrides") or [] for s in recipe.stages}
    summary = build_summary(
        recipe,
        layout,
        lambda stage, step: "completed" if marker(stage, step) else "pending",
        lambda stage, step: marker(stage, step).get("duration_s"),
        {name: args for name, args in overrides.items() if args},
    )
    # where the recipe that made these outputs came from (not summary.json's: a refused run rewrites that one):
    # only used to check the run against that recipe as it is now
    source = read_json_or_none(layout.recipe_source) or read_json_or_none(layout.summary) or {}
    return {**summary, "recipe": run.get("recipe", recipe.name), "recipe_dir": source.get("recipe_dir", "")}


def _fresh(layout: RunLayout, summary: dict, name: str, exported: bool = False) -> None:
    problems = stale_steps(layout, summary, summary_variant(layout, summary, name), exported)
    if problems:
        raise RecipeError(
            layout.summary,
            f"variants.{name}",
            f"not published: {'; '.join(problems)}; run {run_command(layout, summary)} first",
        )


def run_command(layout: RunLayout, summary: dict) -> str:
    """The command that brings the run up to date (its recipe folder, when it is still where it was)."""
    recipe_dir = summary.get("recipe_dir") or ""
    recipe_dir = recipe_dir if recipe_dir and (Path(recipe_dir) / PIPELINE_FILE).is_file() else "RECIPE_DIR"
    return f"`aurora-m run {recipe_dir} --output-dir {layout.root}`"


def check_exports_folder(out_dir: str | Path, names: list[str]) -> None:
    """``publish --all --out DIR`` writes DIR/<variant> per variant: DIR must be new, empty, or hold only exports of
    ours (the same ownership rule as one ``--out`` folder: nothing of the user's is written into or replaced)."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise RecipeError(out_dir, "--out", "is a file, expected a folder; nothing was changed")
    foreign = sorted(
        p.name
        for p in (root.iterdir() if root.is_dir() else [])
        if not (p.is_dir() and p.name in names and (p / ExportDir.MARKER).is_file())
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise RecipeError(
            out_dir,
            "--out",
            f"holds what aurora-m did not write for --all ({shown}): --all writes one export per variant into a new "
            "or empty folder; nothing was changed",
        )


def variant_names(run_dir: str | Path, variant: str | None, out_dir: str | Path | None = None) -> list[str]:
    """``[variant]``, or (``None``: --all) every variant the run evaluated, whose folders ``out_dir`` (if any) may
    hold."""
    layout, summary = _checked(run_dir, None)
    if variant is not None:
        summary_variant(layout, summary, variant)
        return [variant]
    names = [v["name"] for v in summary["variants"] if v.get("evaluated_by")]
    if not names:
        raise RecipeError(layout.summary, "variants", "no evaluated variant: add an eval stage to the recipe")
    if out_dir is not None:
        check_exports_folder(out_dir, names)
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
            export,
            None,
            f"not exported: run {run_command(layout, summary)} (its {entry['published_by']} stage writes it)",
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
