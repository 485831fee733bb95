"""Recipe folders: ``pipeline.yaml`` plus one flat YAML per stage, checked strictly, parsed with TrlParser.

Every mistake becomes a :class:`RecipeError` naming the file and the key: unknown keys (with the
closest known key), wrong types, missing data files, weights that make no sense, unknown patches,
stages that name a missing predecessor, and cycles between stages.
"""

from __future__ import annotations

import difflib
import graphlib
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path

import yaml

from .args import (EvalArguments, MixtureArguments, ModelArguments, PublishArguments, SFTDataArguments,
                   SourceSpec)
from .errors import RecipeError
from .patches import PATCHES, check_patches

PIPELINE_FILE = "pipeline.yaml"
# What each kind of stage does, as steps with their own completion markers.
STEPS = {"pretrain": ("data", "train"), "sft": ("data", "train"), "eval": ("eval",), "publish": ("publish",)}
ENGINES = {"pretrain": ("transformers",), "sft": ("transformers",), "eval": ("transformers",),
           "publish": ("transformers",)}
MODEL_KINDS = ("pretrain", "sft")
STAGE_KEYS = {"name": str, "kind": str, "config": str, "engine": str, "inputs": list, "variant": str,
              "description": str}
PIPELINE_KEYS = {"name": str, "description": str, "stages": list}
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SOURCE_LISTS = {"mixture": "pretrain", "sft_sources": "sft", "perplexity_sources": "eval"}
# hub_token, HF_TOKEN, WANDB_API_KEY ... but not eos_token / pad_token (special-token strings)
SECRET_KEY = re.compile(r"(?<!eos)(?<!bos)(?<!pad)(?<!unk)(^|_)(token|secret|password|api_key|key)$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def stage_dataclasses(kind: str) -> tuple[type, ...]:
    """The dataclasses a stage YAML of this kind fills. Imports transformers / trl only when asked."""
    if kind == "pretrain":
        from transformers import TrainingArguments

        return (ModelArguments, MixtureArguments, TrainingArguments)
    if kind == "sft":
        from trl import SFTConfig

        return (ModelArguments, SFTDataArguments, SFTConfig)
    if kind == "eval":
        from transformers import TrainingArguments

        return (EvalArguments, TrainingArguments)
    if kind == "publish":
        return (PublishArguments,)
    raise ValueError(f"unknown stage kind {kind!r}")


# ----------------------------------------------------------------------------- YAML and types
def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(path, None, f"{line}not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(path, None, f"expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def value_matches(value, tp) -> bool:
    """Whether ``value`` (as YAML gave it) can fill a dataclass field annotated ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any or tp is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arm) for arm in args)
    if origin is typing.Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string; argparse's float() accepts it
            try:
                float(value)
                return True
            except ValueError:
                return False
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, typing.List) or tp is list:
        return isinstance(value, list) and all(value_matches(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation we do not model: let the dataclass decide


def _field_types(dataclass_types) -> dict[str, object]:
    out = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            if f.init:
                out.setdefault(f.name, hints.get(f.name, f.type))
    return out


def _unknown_key(file, key, known, where="") -> RecipeError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return RecipeError(file, key, f"unknown key{where}{hint}")


def check_keys_and_types(file: Path, config: dict, dataclass_types) -> None:
    known = _field_types(dataclass_types)
    for key, value in config.items():
        if key == "env":
            if not isinstance(value, dict):
                raise RecipeError(file, key, "expected a mapping of environment variables")
            continue
        if key not in known:
            names = ", ".join(dc.__name__ for dc in dataclass_types)
            raise _unknown_key(file, key, known, f" (not a field of {names})")
        if not value_matches(value, known[key]):
            raise RecipeError(file, key, f"expected {_type_name(known[key])}, got {type(value).__name__} {value!r}")


# ----------------------------------------------------------------------------- sources
def resolve_path(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def check_sources(file: Path, key: str, sources: list, need_weights: bool) -> list[SourceSpec]:
    hints = typing.get_type_hints(SourceSpec)
    specs, names = [], set()
    if not sources:
        raise RecipeError(file, key, "expected at least one source")
    for i, raw in enumerate(sources):
        where = f"{key}[{i}]"
        if not isinstance(raw, dict):
            raise RecipeError(file, where, f"expected a mapping with name/path/weight, got {type(raw).__name__}")
        for k, v in raw.items():
            if k not in hints:
                raise _unknown_key(file, f"{where}.{k}", SourceSpec.keys())
            if not value_matches(v, hints[k]):
                raise RecipeError(file, f"{where}.{k}", f"expected {_type_name(hints[k])}, got {v!r}")
        if "name" not in raw:
            raise RecipeError(file, f"{where}.name", "missing: every source needs a name")
        spec = SourceSpec(**raw)
        spec.weight = float(spec.weight)
        if spec.name in names:
            raise RecipeError(file, f"{where}.name", f"duplicate source name {spec.name!r}")
        names.add(spec.name)
        if (spec.path is None) == (spec.dataset is None):
            raise RecipeError(file, where, "expected exactly one of 'path' (local file) or 'dataset' (Hub id)")
        if spec.path is not None:
            local = resolve_path(file.parent, spec.path)
            if not local.name.endswith(DATA_SUFFIXES):
                raise RecipeError(file, f"{where}.path", f"expected a {'/'.join(DATA_SUFFIXES)} file, got {spec.path!r}")
            if not local.is_file():
                raise RecipeError(file, f"{where}.path", f"data file not found: {local}")
        if need_weights and not (math.isfinite(spec.weight) and spec.weight > 0):
            raise RecipeError(file, f"{where}.weight", f"expected a positive finite number, got {raw.get('weight')!r}")
        if spec.format not in ("text", "instruction"):
            raise RecipeError(file, f"{where}.format", f"expected 'text' or 'instruction', got {spec.format!r}")
        if spec.take not in ("train", "heldout"):
            raise RecipeError(file, f"{where}.take", f"expected 'train' or 'heldout', got {spec.take!r}")
        if not 0.0 <= spec.holdout_fraction < 1.0:
            raise RecipeError(file, f"{where}.holdout_fraction", f"expected 0 <= x < 1, got {spec.holdout_fraction}")
        if spec.take == "heldout" and spec.holdout_fraction == 0:
            raise RecipeError(file, f"{where}.holdout_fraction", "take: heldout needs a holdout_fraction above 0")
        if spec.max_docs is not None and spec.max_docs <= 0:
            raise RecipeError(file, f"{where}.max_docs", f"expected a positive number, got {spec.max_docs}")
        specs.append(spec)
    return specs


# ----------------------------------------------------------------------------- one stage
def check_stage_config(file: Path, kind: str, has_model_input: bool = False) -> dict:
    """Check one stage YAML without running anything; returns the mapping."""
    file = Path(file)
    config = read_yaml(file)
    check_keys_and_types(file, config, stage_dataclasses(kind))
    for key in SOURCE_LISTS:
        if key in config:
            check_sources(file, key, config[key], need_weights=key != "perplexity_sources")
    required = {"pretrain": "mixture", "sft": "sft_sources", "eval": "perplexity_sources"}.get(kind)
    if required and required not in config:
        raise RecipeError(file, required, "missing: this stage needs a list of sources")
    if kind in MODEL_KINDS:
        check_patches(config.get("config_patches", []), file)
        continues = has_model_input or bool(config.get("model_name_or_path"))
        for spec in config.get("config_patches", []):
            patch = PATCHES[spec.partition(":")[0]]
            if continues and patch.from_config_only:
                raise RecipeError(file, "config_patches",
                                  f"patch {patch.name!r} reshapes layers, so it only applies to a model built from base_config")
        for i, tok_file in enumerate(config.get("tokenizer_train_files", [])):
            if not resolve_path(file.parent, tok_file).is_file():
                raise RecipeError(file, f"tokenizer_train_files[{i}]", f"file not found: {tok_file}")
        if not (has_model_input or config.get("model_name_or_path") or config.get("base_config")):
            raise RecipeError(file, "model_name_or_path",
                              "missing: set model_name_or_path or base_config (or give the stage an input in pipeline.yaml)")
        if config.get("base_config") and not config.get("model_name_or_path") and not has_model_input:
            if not (config.get("tokenizer_name_or_path") or config.get("tokenizer_train_files")):
                raise RecipeError(file, "tokenizer_name_or_path",
                                  "missing: a model built from base_config needs tokenizer_name_or_path or tokenizer_train_files")
    if config.get("seq_length", 1) <= 0:
        raise RecipeError(file, "seq_length", f"expected a positive integer, got {config['seq_length']}")
    if kind == "pretrain" and not config.get("train_tokens", 0) > 0:
        raise RecipeError(file, "train_tokens", f"expected the stage's token budget (a positive integer), "
                                                f"got {config.get('train_tokens', 'nothing')}")
    return config


def parse_stage(file: Path, kind: str, overrides: list[str] | None = None, *, validate_only: bool = False,
                has_model_input: bool = False):
    """Parse a stage YAML into its dataclasses with TrlParser (``--key value`` overrides win).

    Relative data paths are resolved against the YAML's folder. With ``validate_only`` the
    machine-dependent check (bf16 needs a GPU) is set aside: validation is about the recipe.
    """
    from trl import TrlParser

    file = Path(file)
    check_stage_config(file, kind, has_model_input=has_model_input)
    argv = ["--config", str(file), *(overrides or [])]
    if validate_only:
        argv += ["--use_cpu", "true"] if kind not in ("publish",) else []
    try:
        parsed = TrlParser(stage_dataclasses(kind)).parse_args_and_config(argv)
    except (ValueError, TypeError) as err:
        raise RecipeError(file, None, str(err)) from None
    for args in parsed:
        _resolve_input_paths(args, file.parent)
    return parsed


def _resolve_input_paths(args, base: Path) -> None:
    for key in SOURCE_LISTS:
        for source in getattr(args, key, None) or []:
            if source.get("path"):
                source["path"] = str(resolve_path(base, source["path"]).resolve())
    if isinstance(args, ModelArguments):
        args.tokenizer_train_files = [str(resolve_path(base, p).resolve()) for p in args.tokenizer_train_files]
        if args.base_config and args.base_config.endswith(".json"):
            args.base_config = str(resolve_path(base, args.base_config).resolve())


# ----------------------------------------------------------------------------- the pipeline
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
    def steps(self) -> tuple[str, ...]:
        return STEPS[self.kind]


@dataclass
class Recipe:
    dir: Path
    name: str
    stages: list[StageSpec]  # in run order (inputs first)
    description: str = ""

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
            out.extend([upstream] if upstream.kind in MODEL_KINDS else self.model_inputs(upstream))
        return out

    def variants(self) -> dict[str, StageSpec]:
        return {s.variant: s for s in self.stages if s.variant}


def load_recipe(recipe_dir: str | Path, *, check_stages: bool = True) -> Recipe:
    """Read and check ``recipe_dir/pipeline.yaml`` and (by default) every stage YAML it names."""
    recipe_dir = Path(recipe_dir)
    file = recipe_dir / PIPELINE_FILE
    if not recipe_dir.is_dir():
        raise RecipeError(recipe_dir, None, "recipe folder not found")
    raw = read_yaml(file)
    for key, value in raw.items():
        if key not in PIPELINE_KEYS:
            raise _unknown_key(file, key, PIPELINE_KEYS)
        if not isinstance(value, PIPELINE_KEYS[key]):
            raise RecipeError(file, key, f"expected {PIPELINE_KEYS[key].__name__}, got {type(value).__name__}")
    if not raw.get("stages"):
        raise RecipeError(file, "stages", "missing: expected a list of stages")
    stages: dict[str, StageSpec] = {}
    for i, entry in enumerate(raw["stages"]):
        where = f"stages[{i}]"
        if not isinstance(entry, dict):
            raise RecipeError(file, where, "expected a mapping with name, kind, config")
        for key, value in entry.items():
            if key not in STAGE_KEYS:
                raise _unknown_key(file, f"{where}.{key}", STAGE_KEYS)
            if not isinstance(value, STAGE_KEYS[key]):
                raise RecipeError(file, f"{where}.{key}", f"expected {STAGE_KEYS[key].__name__}, got {value!r}")
        for key in ("name", "kind", "config"):
            if key not in entry:
                raise RecipeError(file, f"{where}.{key}", "missing")
        name = entry["name"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise RecipeError(file, f"{where}.name", f"expected letters, digits, '-', '_' or '.', got {name!r}")
        if name in stages:
            raise RecipeError(file, f"{where}.name", f"duplicate stage name {name!r}")
        kind = entry["kind"]
        if kind not in STEPS:
            raise RecipeError(file, f"{where}.kind", f"expected one of {', '.join(STEPS)}, got {kind!r}")
        engine = entry.get("engine", "transformers")
        if engine not in ENGINES[kind]:
            raise RecipeError(file, f"{where}.engine",
                              f"engine {engine!r} is not available for {kind} stages (available: {', '.join(ENGINES[kind])})")
        if not all(isinstance(x, str) for x in entry.get("inputs", [])):
            raise RecipeError(file, f"{where}.inputs", "expected a list of stage names")
        if "variant" in entry and kind not in MODEL_KINDS:
            raise RecipeError(file, f"{where}.variant", f"only {'/'.join(MODEL_KINDS)} stages produce a model variant")
        stages[name] = StageSpec(name=name, kind=kind, config=recipe_dir / entry["config"], engine=engine,
                                 inputs=list(entry.get("inputs", [])), variant=entry.get("variant"),
                                 description=entry.get("description", ""), position=i)
    order = _run_order(file, stages)
    recipe = Recipe(dir=recipe_dir, name=raw.get("name", recipe_dir.name), stages=order,
                    description=raw.get("description", ""))
    _check_wiring(file, recipe)
    if check_stages:
        for stage in recipe.stages:
            check_stage_config(stage.config, stage.kind, has_model_input=bool(stage.inputs))
    return recipe


def _run_order(file: Path, stages: dict[str, StageSpec]) -> list[StageSpec]:
    position = {name: i for i, name in enumerate(stages)}
    sorter = graphlib.TopologicalSorter()
    for i, stage in enumerate(stages.values()):
        for name in stage.inputs:
            if name not in stages:
                raise RecipeError(file, f"stages[{i}].inputs",
                                  f"stage {stage.name!r} names a missing predecessor {name!r} (stages: {', '.join(stages)})")
        sorter.add(stage.name, *stage.inputs)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        first = min(cycle, key=position.get)
        raise RecipeError(file, f"stages[{position[first]}].inputs",
                          f"stage cycle: {' -> '.join(reversed(cycle))}") from None
    order, ready = [], []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.get)
        for name in ready:  # listed order among stages that are ready together
            order.append(stages[name])
            sorter.done(name)
    return order


def _check_wiring(file: Path, recipe: Recipe) -> None:
    variants = {}
    for stage in recipe.stages:
        i = stage.position
        where = f"stages[{i}].inputs"
        kinds = [recipe.stage(n).kind for n in stage.inputs]
        if stage.kind in MODEL_KINDS and (len(kinds) > 1 or any(k not in MODEL_KINDS for k in kinds)):
            raise RecipeError(file, where, f"a {stage.kind} stage continues from at most one model stage, got {stage.inputs}")
        if stage.kind == "eval" and (not kinds or any(k not in MODEL_KINDS for k in kinds)):
            raise RecipeError(file, where, "an eval stage needs one or more model stages as inputs")
        if stage.kind == "publish" and (not kinds or any(k != "eval" for k in kinds)):
            raise RecipeError(file, where, "a publish stage takes eval stages as inputs (it publishes what they evaluated)")
        if stage.kind in ("eval", "publish"):
            for upstream in recipe.model_inputs(stage):
                if not upstream.variant:
                    raise RecipeError(file, f"stages[{upstream.position}].variant",
                                      f"stage {upstream.name!r} is evaluated/published, so it needs a variant name")
        if stage.variant:
            if stage.variant in variants:
                raise RecipeError(file, f"stages[{i}].variant", f"variant {stage.variant!r} is also made by {variants[stage.variant]!r}")
            variants[stage.variant] = stage.name


# ----------------------------------------------------------------------------- saved configs
def redact(value):
    """A copy with secrets replaced, for configs saved next to a run or into a model card."""
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "", False) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if is_dataclass(value):
        return redact({f.name: getattr(value, f.name) for f in fields(value)})
    if isinstance(value, str):
        return SECRET_VALUE.sub("***", value)
    return value
