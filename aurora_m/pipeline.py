"""Run a recipe's stages in order: one folder per stage, completion markers, ``summary.json``.

Run folder layout (``DIR``)::

    recipe/              the stage YAMLs as run (secrets redacted)
    <pretrain stage>/    data/ (packed dataset), checkpoint-*/, model/, log_history.json, loss.png
    <sft stage>/         data/ (prompt/completion pairs), checkpoint-*/, model/, loss.png
    <eval stage>/        <variant>/results.json, results.json, perplexity.png
    <publish stage>/     <variant>/ (model files, README.md card, assets/)
    summary.json

A step is complete when its marker ``<stage>/.<step>.done`` exists, written last and atomically,
holding a fingerprint of the step's configuration and of its inputs' fingerprints. ``run`` skips a
step whose marker matches, so a second run returns at once; editing a stage's YAML re-runs that
stage and everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from . import __version__
from .args import MixtureArguments, ModelArguments, PublishArguments, SFTDataArguments
from .errors import RecipeError
from .io import read_json, write_json
from .recipe import Recipe, StageSpec, parse_stage, read_yaml, redact

SUMMARY = "summary.json"
DATA_KEYS = {f for dc in (ModelArguments, MixtureArguments, SFTDataArguments) for f in dc.__dataclass_fields__}


class Pipeline:
    def __init__(self, recipe: Recipe, run_dir: str | Path):
        self.recipe = recipe
        self.run_dir = Path(run_dir).resolve()
        self._fingerprints: dict[tuple[str, str], str] = {}  # the YAMLs do not change during a run

    # ------------------------------------------------------------------ where things are
    def stage_dir(self, stage: StageSpec) -> Path:
        return self.run_dir / stage.name

    def step_dir(self, stage: StageSpec, step: str) -> Path:
        return self.stage_dir(stage) / "data" if step == "data" else self.stage_dir(stage)

    def model_dir(self, stage: StageSpec) -> Path:
        return self.stage_dir(stage) / "model"

    def marker(self, stage: StageSpec, step: str) -> Path:
        return self.stage_dir(stage) / f".{step}.done"

    # ------------------------------------------------------------------ fingerprints and markers
    def fingerprint(self, stage: StageSpec, step: str) -> str:
        key = (stage.name, step)
        if key not in self._fingerprints:
            self._fingerprints[key] = self._compute_fingerprint(stage, step)
        return self._fingerprints[key]

    def _compute_fingerprint(self, stage: StageSpec, step: str) -> str:
        config = read_yaml(stage.config)
        if step == "data":
            config = {k: v for k, v in config.items() if k in DATA_KEYS}
        h = hashlib.sha256(json.dumps([__version__, step, asdict_stage(stage), config], sort_keys=True,
                                      default=str).encode())
        for name in stage.inputs:
            upstream = self.recipe.stage(name)
            h.update(self.fingerprint(upstream, upstream.steps[-1]).encode())
        steps = stage.steps
        if steps.index(step) > 0:
            h.update(self.fingerprint(stage, steps[steps.index(step) - 1]).encode())
        return h.hexdigest()[:20]

    def read_marker(self, stage: StageSpec, step: str) -> dict | None:
        path = self.marker(stage, step)
        return read_json(path) if path.is_file() else None

    def is_complete(self, stage: StageSpec, step: str) -> bool:
        marker = self.read_marker(stage, step)
        return bool(marker) and marker.get("fingerprint") == self.fingerprint(stage, step)

    def all_complete(self) -> bool:
        return all(self.is_complete(s, step) for s in self.recipe.stages for step in s.steps)

    # ------------------------------------------------------------------ running
    def run(self, stages: list[str] | None = None, force: bool = False) -> dict:
        """Run the pipeline (or the named stages); complete steps are skipped unless ``force``."""
        wanted = stages or self.recipe.stage_names
        self._save_recipe_copy()
        for stage in self.recipe.stages:
            if stage.name not in wanted:
                continue
            for step in stage.steps:
                if not force and self.is_complete(stage, step):
                    print(f"[pipeline] {stage.name}/{step}: complete, skipped")
                    continue
                self.run_step(stage, step)
        return self.write_summary()

    def run_step(self, stage: StageSpec, step: str) -> None:
        """Run one step now (whatever its marker says) once its inputs are complete."""
        for name in stage.inputs:
            upstream = self.recipe.stage(name)
            if not self.read_marker(upstream, upstream.steps[-1]):
                raise RecipeError(self.recipe.file, f"stages.{stage.name}.inputs",
                                  f"stage {stage.name!r} needs the output of {name!r}, which is not complete in "
                                  f"{self.run_dir}: run that stage first")
        if stage.steps.index(step) > 0:
            before = stage.steps[stage.steps.index(step) - 1]
            if not self.read_marker(stage, before):
                self.run_step(stage, before)
        self.marker(stage, step).unlink(missing_ok=True)
        print(f"[pipeline] {stage.name}/{step}: running ({stage.kind}, engine {stage.engine})")
        start = time.time()
        fingerprint = self.fingerprint(stage, step)
        STEP_RUNNERS[(stage.kind, step)](self, stage, fingerprint)
        duration = time.time() - start
        write_json(self.marker(stage, step), {"fingerprint": fingerprint, "duration_s": round(duration, 2),
                                              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "output_dir": str(self.step_dir(stage, step))})
        print(f"[pipeline] {stage.name}/{step}: done in {duration:.1f}s")
        self.write_summary()

    def parse(self, stage: StageSpec, overrides: list[str]):
        return parse_stage(stage.config, stage.kind, overrides, has_model_input=bool(stage.inputs))

    def model_overrides(self, stage: StageSpec) -> list[str]:
        inputs = self.recipe.model_inputs(stage)
        return ["--model_name_or_path", str(self.model_dir(inputs[0]))] if inputs else []

    def _save_recipe_copy(self) -> None:
        dest = self.run_dir / "recipe"
        dest.mkdir(parents=True, exist_ok=True)
        for path in [self.recipe.file, *{s.config for s in self.recipe.stages}]:
            text = yaml.safe_dump(redact(read_yaml(path)), sort_keys=False, allow_unicode=True)
            (dest / path.name).write_text(text, encoding="utf-8")

    # ------------------------------------------------------------------ summary
    def lineage(self, stage: StageSpec) -> list[StageSpec]:
        chain = [stage]
        while (inputs := self.recipe.model_inputs(chain[0])):
            chain.insert(0, inputs[0])
        return chain

    def write_summary(self) -> dict:
        stages = []
        for stage in self.recipe.stages:
            steps = []
            for step in stage.steps:
                marker = self.read_marker(stage, step)
                status = ("completed" if self.is_complete(stage, step) else "stale") if marker else "pending"
                steps.append({"step": step, "status": status, "duration_s": (marker or {}).get("duration_s"),
                              "output_dir": str(self.step_dir(stage, step))})
            status = ("completed" if all(s["status"] == "completed" for s in steps)
                      else "pending" if all(s["status"] == "pending" for s in steps) else "incomplete")
            stages.append({"name": stage.name, "kind": stage.kind, "engine": stage.engine, "status": status,
                           "config": stage.config.name, "description": stage.description,
                           "duration_s": round(sum(s["duration_s"] or 0 for s in steps), 2),
                           "output_dir": str(self.stage_dir(stage)), "inputs": stage.inputs, "steps": steps})
        summary = {"recipe": self.recipe.name, "description": self.recipe.description,
                   "recipe_dir": str(self.recipe.dir.resolve()),
                   "run_dir": str(self.run_dir), "aurora_m_version": __version__,
                   "stages": stages, "variants": self.variants()}
        write_json(self.run_dir / SUMMARY, summary)
        return summary

    def variants(self) -> list[dict]:
        out = []
        for name, stage in self.recipe.variants().items():
            entry = {"name": name, "stage": stage.name, "model_dir": str(self.model_dir(stage)),
                     "eval_results": None, "model_card": None,
                     "lineage": [{"stage": s.name, "kind": s.kind, "variant": s.variant or s.name,
                                  "output_dir": str(self.stage_dir(s)), "data_dir": str(self.stage_dir(s) / "data")}
                                 for s in self.lineage(stage)]}
            for other in self.recipe.stages:
                if stage in self.recipe.model_inputs(other):
                    if other.kind == "eval":
                        results = self.stage_dir(other) / name / "results.json"
                        entry["eval_results"] = str(results) if results.is_file() else entry["eval_results"]
                    if other.kind == "publish":
                        card = self.stage_dir(other) / name / "README.md"
                        entry["model_card"] = str(card) if card.is_file() else entry["model_card"]
            out.append(entry)
        return out


def asdict_stage(stage: StageSpec) -> dict:
    d = asdict(stage)
    d["config"] = stage.config.name
    d.pop("position")  # moving a stage in the list or rewording it does not change what it computes
    d.pop("description")
    return d


# ---------------------------------------------------------------------- steps
def _pretrain_data(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    from .data.build import build_pretrain_dataset

    model_args, mix_args, _ = p.parse(stage, p.model_overrides(stage) + ["--output_dir", str(p.stage_dir(stage))])
    build_pretrain_dataset(model_args, mix_args, p.step_dir(stage, "data"), stage.config, stage.name)


def _sft_data(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    from .data.build import build_sft_dataset

    _, data_args, _ = p.parse(stage, p.model_overrides(stage) + ["--output_dir", str(p.stage_dir(stage))])
    build_sft_dataset(data_args, p.step_dir(stage, "data"), stage.config)


def _fresh_output(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    """Keep checkpoints only if they belong to this very configuration (a crash to resume from)."""
    out = p.stage_dir(stage)
    stamp = out / ".train.fingerprint"
    if not (stamp.is_file() and stamp.read_text() == fingerprint):
        for old in out.glob("checkpoint-*"):
            shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def _train(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    """CAP/CAT (Trainer) or safety SFT (TRL), reading the data step's folder and the input model."""
    if stage.kind == "sft":
        from .train.sft import train_sft as train
    else:
        from .train.pretrain import train_pretrain as train

    _fresh_output(p, stage, fingerprint)
    overrides = p.model_overrides(stage) + ["--output_dir", str(p.stage_dir(stage)),
                                             "--dataset_dir", str(p.step_dir(stage, "data"))]
    model_args, data_args, training_args = p.parse(stage, overrides)
    train(model_args, data_args, training_args, stage.config, stage.name)


def _eval(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    from .evaluation.perplexity import evaluate_perplexity

    models = [f"{s.variant}={p.model_dir(s)}" for s in p.recipe.model_inputs(stage)]
    eval_args, training_args = p.parse(stage, ["--output_dir", str(p.stage_dir(stage)), "--eval_models", *models])
    evaluate_perplexity(eval_args, training_args, stage.config)


def _publish(p: Pipeline, stage: StageSpec, fingerprint: str) -> None:
    (publish_args,) = p.parse(stage, [])
    summary = p.write_summary()
    for upstream in p.recipe.model_inputs(stage):
        publish_variant(summary, upstream.variant, p.stage_dir(stage) / upstream.variant, publish_args)


STEP_RUNNERS = {
    ("pretrain", "data"): _pretrain_data,
    ("pretrain", "train"): _train,
    ("sft", "data"): _sft_data,
    ("sft", "train"): _train,
    ("eval", "eval"): _eval,
    ("publish", "publish"): _publish,
}


# ---------------------------------------------------------------------- publishing from a run folder
def publish_variant(summary: dict, variant_name: str, out_dir: str | Path,
                    publish_args: PublishArguments | None = None) -> Path:
    """Export one variant of a finished run, from what its ``summary.json`` records."""
    from .hub.export import LineageStep, Variant, export_variant, repo_id

    publish_args = publish_args or PublishArguments()
    variants = {v["name"]: v for v in summary["variants"]}
    if variant_name not in variants:
        raise RecipeError(Path(summary["run_dir"]) / SUMMARY, "variants",
                          f"no variant {variant_name!r} (variants: {', '.join(variants) or 'none'})")
    entry = variants[variant_name]
    if not entry["eval_results"]:
        raise RecipeError(Path(summary["run_dir"]) / SUMMARY, f"variants.{variant_name}.eval_results",
                          "not evaluated yet: run the eval stage first")
    lineage, parent = [], publish_args.root_model
    for step in entry["lineage"]:
        data_dir = step["data_dir"] if Path(step["data_dir"]).is_dir() else None
        lineage.append(LineageStep(stage=step["stage"], kind=step["kind"], variant=step["variant"],
                                   output_dir=step["output_dir"], starts_from=parent, data_dir=data_dir))
        parent = repo_id(publish_args, step["variant"])
    variant = Variant(name=variant_name, stage=entry["stage"], model_dir=entry["model_dir"],
                      eval_results=entry["eval_results"], lineage=lineage)
    stage_notes = {s["name"]: s.get("description", "") for s in summary["stages"]}
    description = " ".join(x for x in (summary.get("description", ""), stage_notes.get(entry["stage"], "")) if x)
    out = export_variant(variant, publish_args, out_dir, summary["recipe"], description)
    print(f"[publish] {variant_name}: {out}")
    return out


def publish_from_run(run_dir: str | Path, variant_name: str, out_dir: str | Path) -> Path:
    """``aurora-m publish RUN_DIR --variant NAME --out DIR``: uses the run's saved publish config."""
    run_dir = Path(run_dir)
    summary_file = run_dir / SUMMARY
    if not summary_file.is_file():
        raise RecipeError(summary_file, None, "not a run folder (no summary.json): run the pipeline first")
    summary = read_json(summary_file)
    publish_args = None
    for stage in summary["stages"]:
        if stage["kind"] == "publish":
            (publish_args,) = parse_stage(run_dir / "recipe" / stage["config"], "publish")
    return publish_variant(summary, variant_name, out_dir, publish_args)
