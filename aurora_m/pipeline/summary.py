"""``summary.json``: every stage (status, duration, folders) and every variant (lineage, evaluation, card).

Paths are relative to the run folder, so the folder can be moved and still be published.
"""

from __future__ import annotations

from .. import __version__
from ..layout import ExportDir, RunLayout
from ..recipe import Recipe, StageSpec


def stage_status(step_statuses: list[str]) -> str:
    """completed (every step), stale (a step ran on a configuration, files or inputs since changed), pending
    (nothing ran), incomplete (some steps ran, the rest have not)."""
    if all(s == "completed" for s in step_statuses):
        return "completed"
    if "stale" in step_statuses:
        return "stale"
    return "pending" if all(s == "pending" for s in step_statuses) else "incomplete"


def build_summary(
    recipe: Recipe, layout: RunLayout, step_status, durations, overrides: dict[str, list[str]] | None = None
) -> dict:
    """``step_status(stage, step)`` -> completed | stale | pending; ``durations(stage, step)`` -> seconds or None.
    ``overrides``: the command-line ``--key value`` pairs each stage ran with (they are part of its result)."""
    stages = []
    for stage in recipe.stages:
        dirs = layout.stage(stage.name)
        steps = [
            {
                "step": step,
                "status": step_status(stage, step),
                "duration_s": durations(stage, step),
                "output_dir": layout.rel(dirs.data.root if step == stage.spec.data_step else dirs.root),
            }
            for step in stage.steps
        ]
        stages.append(
            {
                "name": stage.name,
                "kind": stage.kind,
                "engine": stage.engine,
                "status": stage_status([s["status"] for s in steps]),
                "config": stage.config.name,
                "description": stage.description,
                "variant": stage.variant,
                "duration_s": round(sum(s["duration_s"] or 0 for s in steps), 2),
                "output_dir": layout.rel(dirs.root),
                "inputs": stage.inputs,
                "steps": steps,
            }
        )
    return {
        "recipe": recipe.name,
        "description": recipe.description,
        "recipe_dir": str(recipe.dir.resolve()),
        "aurora_m_version": __version__,
        "overrides": overrides or {},
        "stages": stages,
        "variants": variants(recipe, layout),
    }


def variants(recipe: Recipe, layout: RunLayout) -> list[dict]:
    out = []
    for name, stage in recipe.variants().items():
        dirs = layout.stage(stage.name)
        entry = {
            "name": name,
            "stage": stage.name,
            "model_dir": layout.rel(dirs.model),
            "evaluated_by": None,
            "eval_results": None,
            "published_by": None,
            "model_card": None,
            "lineage": [lineage_step(layout, s) for s in recipe.lineage(stage)],
        }
        for other in recipe.stages:
            if stage not in recipe.model_inputs(other):
                continue
            other_dirs = layout.stage(other.name)
            if other.spec.evaluates and entry["evaluated_by"] is None:
                entry["evaluated_by"] = other.name
                results = other_dirs.results(name)
                entry["eval_results"] = layout.rel(results) if results.is_file() else None
            elif not other.spec.evaluates and not other.produces_model and entry["published_by"] is None:
                entry["published_by"] = other.name
                card = ExportDir(other_dirs.export(name)).card
                entry["model_card"] = layout.rel(card) if card.is_file() else None
        out.append(entry)
    return out


def lineage_step(layout: RunLayout, stage: StageSpec) -> dict:
    dirs = layout.stage(stage.name)
    return {
        "stage": stage.name,
        "kind": stage.kind,
        "variant": stage.variant or stage.name,
        "description": stage.description,
        "output_dir": layout.rel(dirs.root),
        "data_dir": layout.rel(dirs.data.root),
    }
