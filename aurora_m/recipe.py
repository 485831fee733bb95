"""Recipe folders: ``pipeline.yaml`` and the graph of its stages; each stage YAML checked by ``stage_checks``.

Every mistake becomes a :class:`RecipeError` naming the file and the key: unknown keys (with the closest known
key), stages that name a missing predecessor, cycles between stages, inputs a kind does not take, variants
that are not Hub repo names or are made twice.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RecipeError
from .layout import VARIANT_NAME, RunLayout
from .overrides import read_yaml, unknown_key
from .roots import PIPELINE_FILE, allowed_roots, check_inside, resolve_path
from .stage_checks import check_stage_config, model_positions, stage_model
from .stages import EVALUATIONS, KINDS, MODELS, ONE_MODEL, StageKind, engine_problem

STAGE_KEYS = {
    "name": str,
    "kind": str,
    "config": str,
    "engine": str,
    "inputs": list,
    "variant": str,
    "description": str,
}
PIPELINE_KEYS = {"name": str, "description": str, "stages": list, "data_roots": list}


@dataclass
class StageSpec:
    name: str
    kind: str
    config: Path
    engine: str = "transformers"
    inputs: list[str] = field(default_factory=list)
    variant: str | None = None
    description: str = ""
    position: int = 0  # index in pipeline.yaml's list, for errors that name stages[i]

    @property
    def spec(self) -> StageKind:
        return KINDS[self.kind]

    @property
    def steps(self) -> tuple[str, ...]:
        return self.spec.steps

    @property
    def produces_model(self) -> bool:
        return self.spec.produces_model


@dataclass
class Recipe:
    dir: Path
    name: str
    stages: list[StageSpec]  # in run order (inputs first)
    description: str = ""
    positions: dict[str, int | None] = field(default_factory=dict)  # learned positions per model stage
    models: dict[str, dict | None] = field(default_factory=dict)  # each model stage's config (patched), if known

    @property
    def file(self) -> Path:
        return self.dir / PIPELINE_FILE

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(self.file, "stages", f"no stage named {name!r} (stages: {', '.join(self.stage_names)})")

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def model_inputs(self, stage: StageSpec) -> list[StageSpec]:
        """The model-producing stages a stage reads, following eval -> models for publish."""
        out = []
        for name in stage.inputs:
            upstream = self.stage(name)
            out.extend([upstream] if upstream.produces_model else self.model_inputs(upstream))
        return out

    def lineage(self, stage: StageSpec) -> list[StageSpec]:
        """The chain of model stages that made ``stage``'s model, first stage first."""
        chain = [stage]
        while inputs := self.model_inputs(chain[0]):
            chain.insert(0, inputs[0])
        return chain

    def input_positions(self, stage: StageSpec) -> int | None:
        known = [self.positions.get(s.name) for s in self.model_inputs(stage)]
        known = [n for n in known if n]
        return min(known) if known else None

    def input_model(self, stage: StageSpec) -> dict | None:
        """The config of the model a stage continues from or evaluates (its first input's), when known offline."""
        return next((self.models.get(s.name) for s in self.model_inputs(stage)), None)

    def upstream(self, stage: StageSpec) -> dict:
        """What checking or parsing a stage takes from the recipe around it (keywords of ``check_stage_config``
        and ``parse_stage``): whether it has an input model, that model's positions and config, its engine."""
        return {
            "has_model_input": bool(stage.inputs),
            "input_positions": self.input_positions(stage),
            "input_model": self.input_model(stage),
            "engine": stage.engine,
        }

    def variants(self) -> dict[str, StageSpec]:
        return {s.variant: s for s in self.stages if s.variant}


MAX_STAGE_NAME = 64


def load_recipe(recipe_dir: str | Path, *, check_stages: bool = True) -> Recipe:
    """Read and check ``recipe_dir/pipeline.yaml`` and (by default) every stage YAML it names."""
    recipe_dir = Path(recipe_dir)
    file = recipe_dir / PIPELINE_FILE
    if not recipe_dir.is_dir():
        raise RecipeError(recipe_dir, None, "recipe folder not found")
    raw = read_yaml(file)
    for key, value in raw.items():
        if key not in PIPELINE_KEYS:
            raise unknown_key(file, key, PIPELINE_KEYS)
        if not isinstance(value, PIPELINE_KEYS[key]):
            raise RecipeError(file, key, f"expected {PIPELINE_KEYS[key].__name__}, got {type(value).__name__}")
    if "stages" not in raw:
        raise RecipeError(file, "stages", "missing: expected a list of stages")
    if not raw["stages"]:
        raise RecipeError(file, "stages", "empty: expected at least one stage")
    # a run's copy of its recipe (not checked) loads on a machine without the data folders it read
    roots = allowed_roots(recipe_dir, missing_ok=not check_stages)
    stages: dict[str, StageSpec] = {}
    for i, entry in enumerate(raw["stages"]):
        where = f"stages[{i}]"
        if not isinstance(entry, dict):
            raise RecipeError(file, where, "expected a mapping with name, kind, config")
        for key, value in entry.items():
            if key not in STAGE_KEYS:
                raise unknown_key(file, f"{where}.{key}", STAGE_KEYS)
            if not isinstance(value, STAGE_KEYS[key]):
                raise RecipeError(file, f"{where}.{key}", f"expected {STAGE_KEYS[key].__name__}, got {value!r}")
        for key in ("name", "kind", "config"):
            if key not in entry:
                raise RecipeError(file, f"{where}.{key}", "missing")
        name = entry["name"]
        if not re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_STAGE_NAME - 1}}}", name):
            # a folder name, with markers and temporaries (".NAME.tmp-PID-XXXXXXXX") beside it: well inside 255 bytes
            raise RecipeError(
                file,
                f"{where}.name",
                f"expected letters, digits, '-' or '_', at most {MAX_STAGE_NAME}, got {name[:80]!r}"
                + (f" ({len(name)} characters)" if len(name) > MAX_STAGE_NAME else ""),
            )
        if name in stages:
            raise RecipeError(file, f"{where}.name", f"duplicate stage name {name!r}")
        if name in RunLayout.RESERVED:
            raise RecipeError(
                file,
                f"{where}.name",
                f"{name!r} is the name of a run folder's own {RunLayout.RESERVED[name]}: choose another stage name",
            )
        kind = entry["kind"]
        if kind not in KINDS:
            raise RecipeError(file, f"{where}.kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        engine = entry.get("engine", "transformers")
        available = KINDS[kind].engines()
        if engine not in available:
            raise RecipeError(
                file,
                f"{where}.engine",
                f"engine {engine!r} is not available for {kind} stages (available: {', '.join(available)})",
            )
        if not all(isinstance(x, str) for x in entry.get("inputs", [])):
            raise RecipeError(file, f"{where}.inputs", "expected a list of stage names")
        variant = entry.get("variant")
        if variant is not None and not KINDS[kind].produces_model:
            raise RecipeError(file, f"{where}.variant", f"a {kind} stage produces no model, so it has no variant")
        if variant is not None and not VARIANT_NAME.match(variant):
            raise RecipeError(
                file,
                f"{where}.variant",
                f"{variant!r} is not a Hub repo name: letters, digits, '-', '_', '.', at most 96, "
                f"no '/', '..' or '--', not starting or ending with '-' or '.'",
            )
        config = check_inside(file, f"{where}.config", resolve_path(recipe_dir, entry["config"]), roots)
        stages[name] = StageSpec(
            name=name,
            kind=kind,
            config=config,
            engine=engine,
            inputs=list(entry.get("inputs", [])),
            variant=variant,
            description=entry.get("description", ""),
            position=i,
        )
    order = _run_order(file, stages)
    recipe = Recipe(
        dir=recipe_dir, name=raw.get("name", recipe_dir.name), stages=order, description=raw.get("description", "")
    )
    _check_wiring(file, recipe)
    if check_stages:
        for stage in recipe.stages:
            config = check_stage_config(
                stage.config,
                stage.kind,
                has_model_input=bool(stage.inputs),
                input_positions=recipe.input_positions(stage),
                roots=roots,
                engine=stage.engine,
                input_model=recipe.input_model(stage),
            )
            if stage.produces_model:
                model = stage_model(stage.config, config, recipe.input_model(stage) if stage.inputs else None)
                recipe.models[stage.name] = model
                recipe.positions[stage.name] = model_positions(config, recipe.input_positions(stage), model)
    return recipe


def check_engines(recipe: Recipe, stages: set[str] | None = None, step: str | None = None) -> None:
    """The engine of every stage (or of ``stages``) is importable here, else one line with the install hint.
    With ``step``, only stages that run that step on their engine are checked: ``aurora-m data`` of a nanotron
    stage runs where nanotron is not installed (a CPU node, the project's usual environment)."""
    for stage in recipe.stages:
        if (stages is not None and stage.name not in stages) or (step and not stage.spec.runs_on_engine(step)):
            continue
        problem = engine_problem(stage.engine)
        if problem:
            raise RecipeError(recipe.file, f"stages[{stage.position}].engine", problem)


def _run_order(file: Path, stages: dict[str, StageSpec]) -> list[StageSpec]:
    position = {name: i for i, name in enumerate(stages)}
    sorter = graphlib.TopologicalSorter()
    for i, stage in enumerate(stages.values()):
        for name in stage.inputs:
            if name not in stages:
                raise RecipeError(
                    file,
                    f"stages[{i}].inputs",
                    f"stage {stage.name!r} names a missing predecessor {name!r} (stages: {', '.join(stages)})",
                )
        sorter.add(stage.name, *stage.inputs)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        first = min(cycle, key=position.get)
        raise RecipeError(
            file, f"stages[{position[first]}].inputs", f"stage cycle: {' -> '.join(reversed(cycle))}"
        ) from None
    order = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.get)
        for name in ready:  # listed order among stages that are ready together
            order.append(stages[name])
            sorter.done(name)
    return order


def _check_wiring(file: Path, recipe: Recipe) -> None:
    variants = {}
    for stage in recipe.stages:
        where = f"stages[{stage.position}].inputs"
        upstream = [recipe.stage(n).spec for n in stage.inputs]
        rule = stage.spec.inputs
        if rule == ONE_MODEL and (len(upstream) > 1 or any(not k.produces_model for k in upstream)):
            raise RecipeError(
                file, where, f"a {stage.kind} stage continues from at most one model stage, got {stage.inputs}"
            )
        if rule == MODELS and (not upstream or any(not k.produces_model for k in upstream)):
            raise RecipeError(file, where, f"a {stage.kind} stage needs one or more model stages as inputs")
        if rule == EVALUATIONS and (not upstream or any(not k.evaluates for k in upstream)):
            raise RecipeError(
                file,
                where,
                f"a {stage.kind} stage takes stages that evaluate models as inputs (it publishes what they evaluated)",
            )
        if rule in (MODELS, EVALUATIONS):
            for model_stage in recipe.model_inputs(stage):
                if not model_stage.variant:
                    raise RecipeError(
                        file,
                        f"stages[{model_stage.position}].variant",
                        f"stage {model_stage.name!r} is evaluated/published, so it needs a variant name",
                    )
        if stage.variant:
            if stage.variant in variants:
                raise RecipeError(
                    file,
                    f"stages[{stage.position}].variant",
                    f"variant {stage.variant!r} is also made by {variants[stage.variant]!r}",
                )
            variants[stage.variant] = stage.name
