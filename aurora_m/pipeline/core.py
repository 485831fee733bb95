"""Run a recipe's stages in order, each step once per fingerprint, in a run folder that is ours and locked.

A step is complete when its marker (``RunLayout.stage(name).marker(step)``) holds the step's current
fingerprint: configuration that can change the result, the content of the files it reads, and
the fingerprints of what it reads from. ``run`` skips complete steps. A result-changing edit to a
stage that left checkpoints stops with one line naming what changed; ``--restart STAGE`` sets
those checkpoints aside, ``--resume STAGE`` continues from them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import yaml

from .. import __version__
from ..context import StepContext
from ..errors import RecipeError
from ..io import check_output_dir, read_json_or_none, sweep_dead_temps, write_json, write_text
from ..layout import ExportDir, RunLayout
from ..locking import run_lock
from ..overrides import read_yaml
from ..recipe import Recipe, StageSpec
from ..redaction import redact, redact_overrides
from ..roots import allowed_roots
from ..stages import engines, get_engine
from .fingerprint import Fingerprints, StepPrint, explain_difference
from .outputs import output_problem, record_outputs, run_id_for, step_output_paths
from .summary import build_summary

logger = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self, recipe: Recipe, run_dir, overrides: dict[str, list[str]] | None = None, targets: set[str] | None = None
    ):
        """``overrides``: this command's ``--key value`` pairs per stage, for the stages it ``targets`` (all by
        default). Other stages are judged with the overrides they last ran with, as their markers record."""
        self.recipe = recipe
        self.layout = RunLayout(run_dir)
        self.targets = targets
        self._recipe_saved = False
        self.overrides = {
            s.name: list((overrides or {}).get(s.name, []))
            if self.targets_stage(s.name)
            else self.recorded_overrides(s)
            for s in recipe.stages
        }
        self.prints = Fingerprints(recipe, self.layout, self.overrides)
        self._output_checks: dict[tuple[str, str, str | None], str | None] = {}

    def targets_stage(self, name: str) -> bool:
        return self.targets is None or name in self.targets

    def recorded_overrides(self, stage: StageSpec) -> list[str]:
        for step in reversed(stage.steps):
            marker = read_json_or_none(self.layout.stage(stage.name).marker(step))
            if marker:
                return list(marker.get("overrides", []))
        return []

    # ------------------------------------------------------------------ markers
    def print_of(self, stage: StageSpec, step: str) -> StepPrint:
        return self.prints.of(stage, step)

    def read_marker(self, stage: StageSpec, step: str) -> dict | None:
        return read_json_or_none(self.layout.stage(stage.name).marker(step))

    def step_status(self, stage: StageSpec, step: str) -> str:
        """completed: its marker holds the current fingerprint, the files it wrote are there as it wrote them, and
        everything it read is completed too (so a step that ran on outputs since replaced is stale, whatever its
        own configuration says); stale; pending."""
        return self.step_state(stage, step)[0]

    def step_state(self, stage: StageSpec, step: str) -> tuple[str, str | None]:
        """(status, why it is stale in one phrase, or None)."""
        marker = self.read_marker(stage, step)
        if not marker:
            return "pending", None
        if marker.get("fingerprint") != self.print_of(stage, step).fingerprint:
            return "stale", "its configuration or input files changed"
        problem = self.output_problem(stage, step, marker)
        if problem:
            return "stale", problem
        for key in self.print_of(stage, step).inputs:
            name, _, upstream_step = key.partition("/")
            if self.step_status(self.recipe.stage(name), upstream_step) != "completed":
                return "stale", f"its input {key} is not complete"
        # the very outputs it read: a re-run upstream replaced them, even with the same configuration
        if marker.get("input_runs") != self.input_runs(stage, step):
            return "stale", "an input it read was made again since"
        return "completed", None

    def output_problem(self, stage: StageSpec, step: str, marker: dict) -> str | None:
        """A file the step wrote that is gone or changed (checked once per run of the step: a stat per file)."""
        key = (stage.name, step, marker.get("run_id"))
        if key not in self._output_checks:
            self._output_checks[key] = output_problem(marker.get("outputs"), self.layout.root)
        return self._output_checks[key]

    def input_runs(self, stage: StageSpec, step: str) -> dict[str, str | None]:
        """The run ids of the outputs a step reads now (each marker gets a new one whenever its step runs)."""
        out = {}
        for key in self.print_of(stage, step).inputs:
            name, _, upstream_step = key.partition("/")
            out[key] = (self.read_marker(self.recipe.stage(name), upstream_step) or {}).get("run_id")
        return out

    def model_input_runs(self, stage: StageSpec) -> dict[str, str | None]:
        """Run ids of the model stages a stage continues from (what its checkpoints grew from)."""
        return {
            s.name: (self.read_marker(s, s.steps[-1]) or {}).get("run_id") for s in self.recipe.model_inputs(stage)
        }

    def is_complete(self, stage: StageSpec, step: str) -> bool:
        return self.step_status(stage, step) == "completed"

    def all_complete(self) -> bool:
        return all(self.is_complete(s, step) for s in self.recipe.stages for step in s.steps)

    # ------------------------------------------------------------------ the run folder
    @contextlib.contextmanager
    def session(self, command: str):
        """Claim the run folder (refusing one that is not ours), lock it, and clear what dead runs left."""
        root = self.layout.root
        for folder in root.parents:
            for marker, what in ((RunLayout.MARKER, "run folder"), (ExportDir.MARKER, "export")):
                if (folder / marker).is_file():
                    raise RecipeError(
                        root, None, f"--output-dir is inside the {what} {folder}: choose a folder outside it"
                    )

        def same_recipe(marker: dict) -> str | None:
            if marker.get("recipe") not in (None, self.recipe.name):
                return (
                    f"holds a run of recipe {marker['recipe']!r}, not {self.recipe.name!r}: "
                    f"choose another --output-dir"
                )
            return None

        check_output_dir(
            root,
            "--output-dir",
            RunLayout.MARKER,
            overwrite=True,
            owner_check=same_recipe,
            also_ours=(self.layout.lock.name,),
        )
        root.mkdir(parents=True, exist_ok=True)
        with run_lock(self.layout.lock, command):
            for path in sweep_dead_temps(root):
                logger.info("removed %s, left by a run that was killed", self.layout.rel(path))
            if not self.layout.marker.is_file():
                write_json(
                    self.layout.marker,
                    {"recipe": self.recipe.name, "created_at": _now(), "aurora_m_version": __version__},
                )
            try:
                if not any(self.overrides.get(s.name) for s in self.recipe.stages if self.targets_stage(s.name)):
                    # no overrides given: what is stale says so now, even if this run stops before any step
                    self.write_summary()
                yield self
            finally:
                self.prints.save()

    # ------------------------------------------------------------------ running
    def run(
        self,
        stages: list[str] | None = None,
        force: bool = False,
        restart: set[str] = frozenset(),
        resume: set[str] = frozenset(),
    ) -> dict:
        """Run the pipeline (or the named stages); complete steps are skipped unless ``force`` or restarted."""
        wanted = stages or self.recipe.stage_names
        restart = self.downstream(restart)
        for stage in self.recipe.stages:  # what this machine must allow, before the first step of any stage
            again = force or stage.name in restart
            if stage.name in wanted and (again or not all(self.is_complete(stage, s) for s in stage.steps)):
                stage.spec.check_preflight(self.prints.stage_config(stage), stage.config, stage.name)
        for stage in self.recipe.stages:
            if stage.name not in wanted:
                continue
            for step in stage.steps:
                again = force or (stage.name in restart and step == stage.spec.resumable_step)
                status, why = self.step_state(stage, step)
                if not again and status == "completed":
                    logger.info("%s/%s: complete, skipped", stage.name, step)
                    continue
                if status == "stale" and not again:  # why, in one line naming what changed
                    logger.warning("%s/%s: %s: running it again", stage.name, step, why)
                self.run_step(stage, step, restart=restart, resume=resume)
        self.save_recipe_copy()  # every step it asked for is complete: the folder is this recipe's
        return self.write_summary()

    def downstream(self, names: set[str]) -> set[str]:
        """``names`` and every stage that reads from them, directly or not (their checkpoints grew from them)."""
        out = set(names)
        for stage in self.recipe.stages:  # run order: inputs come first
            if out & set(stage.inputs):
                out.add(stage.name)
        return out

    def run_step(
        self, stage: StageSpec, step: str, restart: set[str] = frozenset(), resume: set[str] = frozenset()
    ) -> None:
        """Run one step now (whatever its marker says) once everything it reads is complete."""
        if not stage.spec.standalone(step):
            self._check_upstream(stage)
        restart = self.downstream(restart)
        index = stage.steps.index(step)
        if index > 0 and not self.is_complete(stage, stage.steps[index - 1]):
            self.run_step(stage, stage.steps[index - 1], restart, resume)
        if stage.spec.resumable_step:
            self._guard_checkpoints(stage, restart, resume)
        dirs = self.layout.stage(stage.name)
        previous = self.read_marker(stage, step) or {}
        dirs.marker(step).unlink(missing_ok=True)
        stage_print = self.print_of(stage, step)
        ctx = self.context(stage, step)
        runner = stage.spec.runner(stage.engine, step)
        logger.info("%s/%s: running (%s, engine %s)", stage.name, step, stage.kind, stage.engine)
        start = time.time()
        input_runs = self.input_runs(stage, step)
        self.save_recipe_copy()  # past every check: what this step writes comes from this recipe
        try:
            runner(ctx)
        except BaseException:
            # the step's marker is gone: the summary must not go on saying "completed" (best effort: a full
            # disk must still be reported as the error it is)
            with contextlib.suppress(Exception):
                self.write_summary()
            raise
        duration = time.time() - start
        outputs = record_outputs(step_output_paths(dirs, stage.spec, step), self.layout.root)
        write_json(
            dirs.marker(step),
            {
                **stage_print.as_dict(),
                "run_id": run_id_for(previous, stage_print.fingerprint, input_runs, outputs),
                "input_runs": input_runs,
                "outputs": outputs,
                "overrides": redact_overrides(self.overrides.get(stage.name, [])),
                "duration_s": round(duration, 2),
                "finished_at": _now(),
                "aurora_m_version": __version__,
            },
        )
        self._output_checks = {k: v for k, v in self._output_checks.items() if k[:2] != (stage.name, step)}
        logger.info("%s/%s: done in %.1fs", stage.name, step, duration)
        self.prints.save()
        self.write_summary()

    def context(self, stage: StageSpec, step: str) -> StepContext:
        models = {s.variant or s.name: self.layout.stage(s.name).model for s in self.recipe.model_inputs(stage)}
        return StepContext(
            stage=stage.name,
            kind=stage.kind,
            step=step,
            engine=stage.engine,
            config=stage.config,
            run=self.layout,
            dirs=self.layout.stage(stage.name),
            overrides=list(self.overrides.get(stage.name, [])),
            input_models=models,
            input_stages={n: self.layout.stage(n) for n in stage.inputs},
            input_positions=self.recipe.input_positions(stage),
            input_model=self.recipe.input_model(stage),
            title=f"{self.recipe.name} {stage.name}",
            tokenizer_args=self.tokenizer_args(stage),
        )

    def tokenizer_args(self, stage: StageSpec) -> list[str]:
        """``--key value`` for the tokenizer of the chain's first stage (paths made absolute)."""
        keys = self.prints.tokenizer_origin(stage)
        root = self.recipe.lineage(stage)[0]
        args: list[str] = []
        for key, value in keys.items():
            if key == "files":
                continue
            if key == "tokenizer_train_files":
                args += [f"--{key}", *(str((root.config.parent / f).resolve()) for f in value)]
            else:
                args += [f"--{key}", str(value)]
        return args

    def _check_upstream(self, stage: StageSpec) -> None:
        """Everything a stage reads, all the way up, is complete for the current recipe."""
        for name in stage.inputs:
            upstream = self.recipe.stage(name)
            self._check_upstream(upstream)
            last = upstream.steps[-1]
            status, reason = self.step_state(upstream, last)
            if status != "completed":
                why = f"is stale ({reason})" if status == "stale" else "has not run"
                raise RecipeError(
                    self.recipe.file,
                    f"stages[{stage.position}].inputs",
                    f"stage {stage.name!r} needs the output of {name!r}, which {why} in "
                    f"{self.layout.root}: run `aurora-m run {self.recipe.dir} --output-dir {self.layout.root}` "
                    f"first (it runs what is not complete)",
                )

    def _guard_checkpoints(self, stage: StageSpec, restart: set[str], resume: set[str]) -> None:
        """Checkpoints are resumed only by the configuration that wrote them, unless the user says otherwise."""
        dirs = self.layout.stage(stage.name)
        current = self.print_of(stage, stage.spec.resumable_step)
        upstream_runs = self.model_input_runs(stage)
        # every engine's checkpoints in the folder (a stage that changed engine left the other's), oldest first
        # within each; partial Trainer checkpoints are set aside here, with a warning
        states = {engine.name: engine.hook("checkpoints")(dirs) for engine in engines() if engine.checkpoints}
        states = {name: found for name, found in states.items() if found}
        state = read_json_or_none(dirs.train_state)
        rerun = [
            name
            for name, run_id in upstream_runs.items()
            if (state or {}).get("upstream_runs", {}).get(name) not in (None, run_id)
        ]
        if states and stage.name in restart:
            aside = dirs.set_aside("restart")
            for name in states:
                get_engine(name).hook("set_aside")(dirs, aside)
            logger.warning(
                "%s: %d checkpoint(s) moved to %s; training starts over",
                stage.name,
                sum(map(len, states.values())),
                self.layout.rel(aside),
            )
        elif states and ((state or {}).get("fingerprint") != current.fingerprint or rerun):
            _, found = next(reversed(states.items()))  # another engine's over the default's, as it resumes
            newest = self.layout.rel(found[-1]).removeprefix(f"{stage.name}/")
            changes = (
                explain_difference(state, current, self._input_details, stage.name)
                if state
                else ["checkpoints of an unknown configuration"]
            )
            if state and state.get("fingerprint") == current.fingerprint:
                changes = [f"its input {name!r} was trained again" for name in rerun]
            if stage.name not in resume:
                raise RecipeError(
                    None,
                    None,
                    f"{stage.name}: {'; '.join(changes)} since {newest}: run again with --restart "
                    f"{stage.name} (set its checkpoints aside and start over) or --resume {stage.name} "
                    f"(continue from {newest} with the new configuration)",
                )
            logger.warning(
                "%s: resuming from %s with the new configuration (%s)", stage.name, newest, "; ".join(changes)
            )
        write_json(dirs.train_state, {**current.as_dict(), "upstream_runs": upstream_runs})

    def _input_details(self, key: str) -> list[str]:
        """What changed in an input step since its marker was written (its files, its keys)."""
        name, _, step = key.partition("/")
        stage = self.recipe.stage(name)
        marker = self.read_marker(stage, step)
        current = self.print_of(stage, step)
        if not marker or marker.get("fingerprint") == current.fingerprint:
            return []
        return explain_difference(marker, current, stage=name)

    # ------------------------------------------------------------------ records
    def save_recipe_copy(self) -> None:
        """The run folder's copy of the recipe its outputs were made with: written once a step is about to run (or
        every step asked for is complete), never by a run that was refused, which would leave a finished run's
        outputs described by a recipe that did not make them (and unpublishable)."""
        if self._recipe_saved:
            return
        self._recipe_saved = True
        dest = self.layout.recipe_copy
        dest.mkdir(parents=True, exist_ok=True)
        for path in [self.recipe.file, *{s.config for s in self.recipe.stages}]:
            content = redact(read_yaml(path))
            if path == self.recipe.file:  # the copy's stage YAMLs lie beside it: it loads as a recipe of its own
                for entry in content.get("stages", []):
                    entry["config"] = Path(entry["config"]).name
                # the folders it read, as read (relative ones would resolve from the copy, somewhere else)
                if content.get("data_roots"):
                    content["data_roots"] = [str(p) for p in allowed_roots(self.recipe.dir)[1:]]
            text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
            write_text(dest / path.name, text)
        write_json(self.layout.recipe_source, {"recipe_dir": str(self.recipe.dir.resolve())})

    def write_summary(self) -> dict:
        def duration(stage, step):
            return (self.read_marker(stage, step) or {}).get("duration_s")

        overrides = {name: redact_overrides(args) for name, args in self.overrides.items() if args}
        summary = build_summary(self.recipe, self.layout, self.step_status, duration, overrides)
        write_json(self.layout.summary, summary)
        return summary


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
