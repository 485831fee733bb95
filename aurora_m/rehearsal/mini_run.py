"""Run the miniature (:mod:`.miniature`) through the real pipeline, stage by stage, step by step, in this process
(as ``aurora-m run`` does), while the recorded Hub (when offline) answers every read. Each stage ends
``completed`` only when all its steps ran; the first step that fails stops the rehearsal with one line naming the
stage, the step and the reason (its traceback goes to ``DIR/miniature.log``, not the terminal). Then the publish
dry run: every variant's export, as ``aurora-m publish RUN --variant NAME --dry-run`` lists it, nothing pushed.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
from pathlib import Path

from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import ExportDir

logger = logging.getLogger(__name__)

SAMPLE_ROWS, SAMPLE_MB = 200, 1.0  # the command's defaults (command.py)
RUN = "run"  # the miniature's run folder, under the rehearsal's output folder
LOG = "miniature.log"
DRY_RUN = "publish-dry-run"


def run_miniature(original, mini: Path, out: Path, report: dict, stage_entry) -> None:
    """Every step of every stage of the miniature of ``original``; ``stage_entry(report, stage)`` finds a stage's
    entry. Errors name the recipe's own stage file (the miniature's copy is in ``DIR/miniature``)."""
    from ..pipeline.core import Pipeline
    from ..recipe import check_engines, load_recipe

    own = {s.config.name: s for s in original.stages}
    try:
        recipe = load_recipe(mini)
        check_engines(recipe)
    except RecipeError as err:  # what the recipe's own check could not see: e.g. keys read against the model
        stage = own.get(Path(str(err.file)).name)
        if stage is None:
            raise RecipeError(err.file, err.key, f"miniature recipe: {err.message}") from err
        stage_entry(report, stage).update(status="refused", reason=f"miniature: {err.key}: {err.message}")
        raise RecipeError(stage.config, err.key, f"stage {stage.name} (in miniature): {err.message}") from err
    for old in (out / RUN, out / LOG, out / DRY_RUN):  # an earlier rehearsal's (the folder is ours): start over
        if old.is_dir():
            shutil.rmtree(old)
        old.unlink(missing_ok=True) if old.is_file() else None
    pipeline = Pipeline(recipe, out / RUN)
    report["miniature"]["run_folder"] = str(out / RUN)
    with pipeline.session("aurora-m rehearse"):
        for stage in recipe.stages:
            entry = stage_entry(report, stage)
            for step in stage.steps:
                started = time.monotonic()
                try:
                    pipeline.run_step(stage, step)
                except (Exception, SystemExit) as err:  # noqa: BLE001 - one line; the traceback goes to the log
                    _fail(entry, own.get(stage.config.name, stage), step, err, out, _small_sample(report))
                entry["steps"][f"miniature {step}"] = f"completed ({time.monotonic() - started:.1f} s)"
            entry.update(_stage_facts(pipeline, stage))
            entry["status"] = "completed"
        pipeline.save_recipe_copy()
        pipeline.write_summary()
    report["publish_dry_run"] = _publish_dry_run(out / RUN, out / DRY_RUN)


def _small_sample(report: dict) -> str:
    """What to say when a miniature step fails on a sample smaller than the defaults: the recipe may be fine."""
    sample = report.get("sample", {})
    if sample.get("rows_per_source", SAMPLE_ROWS) < SAMPLE_ROWS or sample.get("mb_per_source", SAMPLE_MB) < SAMPLE_MB:
        return (
            f"; the sample was smaller than the defaults (--sample-rows {sample.get('rows_per_source')}, --sample-mb "
            f"{sample.get('mb_per_source')}): a source may hold too little to split or train on, so rehearse with "
            f"the defaults ({SAMPLE_ROWS} rows, {SAMPLE_MB:g} MB) before changing the recipe"
        )
    return ""


def _fail(entry: dict, stage, step: str, err: BaseException, out: Path, hint: str = "") -> None:
    with open(out / LOG, "a", encoding="utf-8") as fh:
        fh.write(f"--- {stage.name}/{step}\n" + "".join(traceback.format_exception(err)))
    key = err.key if isinstance(err, RecipeError) else None  # the stage key it names, in the recipe's own file
    what = err.message if isinstance(err, RecipeError) else f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    entry["status"] = "failed"
    entry["reason"] = f"miniature {step}: {': '.join(p for p in (key, what) if p)}"
    raise RecipeError(
        stage.config, key, f"stage {stage.name}, miniature step {step}: {what} (traceback: {out / LOG}){hint}"
    ) from err


def _stage_facts(pipeline, stage) -> dict:
    """What the stage's steps left: losses (first, last, all finite), checkpoints, the model, eval results."""
    dirs = pipeline.layout.stage(stage.name)
    facts: dict = {"durations_s": {}}
    for step in stage.steps:
        marker = read_json_or_none(dirs.marker(step)) or {}
        facts["durations_s"][step] = marker.get("duration_s")
    losses = _losses(dirs.log_history)
    if losses:
        facts["losses"] = {"first": losses[0], "last": losses[-1], "steps": len(losses)}
        facts["losses_finite"] = all(math.isfinite(x) for x in losses)
    if dirs.model.is_dir():
        facts["model"] = sorted(p.name for p in dirs.model.iterdir() if p.suffix in (".safetensors", ".json"))
    if stage.kind == "eval":
        facts["results"] = sorted(
            str(p.relative_to(dirs.root)) for p in dirs.root.glob("*/*.json") if not p.parent.name.startswith(".")
        )
    if stage.kind == "publish":
        facts["exports"] = sorted(p.name for p in dirs.root.iterdir() if ExportDir(p).card.is_file())
    return facts


def _losses(log_history: Path) -> list[float]:
    """Training losses, as the trainer logged them (the stage's log_history.json)."""
    history = read_json_or_none(log_history) or []
    return [float(h["loss"]) for h in history if isinstance(h, dict) and "loss" in h]


def _publish_dry_run(run_dir: Path, out: Path) -> dict:
    """Each evaluated variant as ``aurora-m publish RUN --variant NAME --dry-run --out DIR`` plans and writes it:
    the commit's operations and the files it would upload (the card included), nothing pushed."""
    from ..pipeline.publish import push_from_run, variant_names

    found = {}
    for name in variant_names(run_dir, None):
        operations, where = push_from_run(run_dir, name, dry_run=True, out_dir=out / name)
        found[name] = {"operations": operations, "folder": where}
    return found
