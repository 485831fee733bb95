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

from .args import LANGUAGES, ModelArguments, SourceSpec
from .errors import RecipeError
from .extras import check_extras
from .layout import RunLayout
from .patches import AURORA_M_CONTEXT, PATCHES, check_patches, parse_patch, read_config_json
from .stages import EVALUATIONS, KINDS, MODELS, ONE_MODEL, StageKind, engine_problem

PIPELINE_FILE = "pipeline.yaml"
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
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
# hub_token, HF_TOKEN, WANDB_API_KEY ... but not eos_token / pad_token (special-token strings)
SECRET_KEY = re.compile(
    r"(?<!eos)(?<!bos)(?<!pad)(?<!unk)(^|_)(token|secret|password|passwd|pass|api_key|key|"
    r"credentials?|auth)$",
    re.IGNORECASE,
)
SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
# A Hub repo name: what a variant becomes (NAMESPACE/VARIANT), so no separators, no "..", no "--"
VARIANT_NAME = re.compile(r"^(?![-.])(?!.*(\.\.|--))[A-Za-z0-9._-]{1,96}(?<![-.])$")


def stage_dataclasses(kind: str) -> tuple[type, ...]:
    """The dataclasses a stage YAML of this kind fills (transformers / trl imported only when asked)."""
    return KINDS[kind].dataclass_types()


def source_keys() -> dict[str, StageKind]:
    """Every list of sources a stage YAML may hold, and the kind that requires it."""
    return {k.source_key: k for k in KINDS.values() if k.source_key}


# ----------------------------------------------------------------------------- YAML and types
class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as err:
        raise RecipeError(
            path, None, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from None
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


class CliValue(str):
    """A value given on the command line: a string that argparse will convert to the field's type."""

    def __repr__(self) -> str:
        return repr(str(self))


def typed_cli_value(value, tp):
    """A command-line string as the field's type reads it (``"no"`` -> False for a bool), for fingerprints."""
    if isinstance(value, list):
        return [typed_cli_value(v, typing.get_args(tp)[0] if typing.get_args(tp) else str) for v in value]
    arms = (
        [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType)
        else [tp]
    )
    for arm in arms:
        try:
            if arm is bool:
                return value.lower() in ("true", "yes", "1", "on", "t", "y")
            if arm in (int, float):
                return arm(value)
        except ValueError:
            continue
    return str(value)


class BareFlag(CliValue):
    """``--key`` with no value: "true" for a boolean, a missing value for anything else."""


def _cli_value_matches(value: CliValue, tp) -> bool:
    converters = {
        bool: lambda v: v.lower() in ("true", "false", "yes", "no", "1", "0") or int("x"),
        int: int,
        float: float,
    }
    if tp in converters:
        try:
            converters[tp](value)
            return True
        except ValueError:
            return False
    if tp is type(None):
        return value.lower() in ("none", "null")
    if typing.get_origin(tp) is typing.Literal:
        return value in [str(a) for a in typing.get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return value in {str(m.value) for m in tp}
    return True  # strings, lists of strings and what argparse converts itself


def value_matches(value, tp) -> bool:
    """Whether ``value`` (as YAML or the command line gave it) can fill a dataclass field annotated ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any or tp is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arm) for arm in args)
    if isinstance(value, CliValue):
        return _cli_value_matches(value, tp)
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
    if origin in (list, list) or tp is list:
        return (
            isinstance(value, list) and all(value_matches(v, args[0]) for v in value)
            if args
            else isinstance(value, list)
        )
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation we do not model: let the dataclass decide


def field_types(dataclass_types) -> dict[str, object]:
    out = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            if f.init:
                out.setdefault(f.name, hints.get(f.name, f.type))
    return out


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_key(file, key, known, where="") -> RecipeError:
    """``key`` may be a path (``mixture[5].wieght``): its last part is what is compared with ``known``."""
    return RecipeError(file, key, f"unknown key{where}{_did_you_mean(key.rsplit('.', 1)[-1], known)}")


def check_keys_and_types(file: Path, config: dict, dataclass_types) -> None:
    known = field_types(dataclass_types)
    for key, value in config.items():
        if key == "env":
            if not isinstance(value, dict):
                raise RecipeError(file, key, "expected a mapping of environment variables")
            continue
        cli = isinstance(value, CliValue) or (isinstance(value, list) and any(isinstance(v, CliValue) for v in value))
        where, name = ("command line", f"--{key}") if cli else (file, key)
        if key not in known:
            names = ", ".join(dc.__name__ for dc in dataclass_types)
            raise _unknown_key(where, name, known, f" (not a field of {names})")
        if isinstance(value, BareFlag) and not value_matches(True, known[key]):
            raise RecipeError(where, name, f"missing a value (expected {_type_name(known[key])})")
        if not value_matches(value, known[key]):
            shown = f"{value!r}" if cli else f"{type(value).__name__} {value!r}"
            raise RecipeError(where, name, f"expected {_type_name(known[key])}, got {shown}")


# ----------------------------------------------------------------------------- paths
def resolve_path(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def allowed_roots(recipe_dir: Path) -> list[Path]:
    """Folders a recipe may read from: its own, plus the ``data_roots`` its pipeline.yaml names."""
    roots = [Path(recipe_dir).resolve()]
    pipeline = Path(recipe_dir) / PIPELINE_FILE
    if pipeline.is_file():
        data_roots = read_yaml(pipeline).get("data_roots") or []
        if not isinstance(data_roots, list) or not all(isinstance(r, str) for r in data_roots):
            raise RecipeError(pipeline, "data_roots", "expected a list of folders")
        for i, root in enumerate(data_roots):
            folder = resolve_path(Path(recipe_dir), root).resolve()
            if not folder.is_dir():
                raise RecipeError(pipeline, f"data_roots[{i}]", f"{root} is not a folder")
            roots.append(folder)
    return roots


def check_inside(file: Path, key: str, path: Path, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks too), refused when it leaves the recipe folder and every data root."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise RecipeError(
            file,
            key,
            f"{path} is outside the recipe folder {roots[0]}; add the folder that holds it "
            f"to data_roots in {PIPELINE_FILE} to read it",
        )
    return resolved


# ----------------------------------------------------------------------------- sources
def check_sources(
    file: Path, key: str, sources: list, need_weights: bool, roots: list[Path] | None = None
) -> list[SourceSpec]:
    hints = typing.get_type_hints(SourceSpec)
    roots = roots if roots is not None else allowed_roots(file.parent)
    specs, names = [], set()
    if not isinstance(sources, list) or not sources:
        raise RecipeError(file, key, "expected a non-empty list of sources")
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
        if spec.name in names:
            raise RecipeError(file, f"{where}.name", f"duplicate source name {spec.name!r}")
        names.add(spec.name)
        if (spec.path is None) == (spec.dataset is None):
            raise RecipeError(file, where, "expected exactly one of 'path' (local file) or 'dataset' (Hub id)")
        if spec.path is not None:
            local = resolve_path(file.parent, spec.path)
            # a pretraining mixture streams through datatrove: a folder of files, or gzip-compressed JSON lines
            corpus = key == "mixture"
            if corpus and local.is_dir():
                check_inside(file, f"{where}.path", local, roots)
            else:
                suffixes = DATA_SUFFIXES + ((".jsonl.gz", ".json.gz") if corpus else ())
                if not local.name.endswith(suffixes):
                    kinds = "/".join(suffixes) + (" file or a folder of them" if corpus else " file")
                    raise RecipeError(file, f"{where}.path", f"expected a {kinds}, got {spec.path!r}")
                check_inside(file, f"{where}.path", local, roots)
                if not local.is_file():
                    raise RecipeError(file, f"{where}.path", f"data file not found: {local}")
        if spec.weight is not None:
            spec.weight = float(spec.weight)
            if need_weights and not (math.isfinite(spec.weight) and spec.weight > 0):
                raise RecipeError(
                    file, f"{where}.weight", f"expected a positive finite number, got {raw.get('weight')!r}"
                )
        if spec.tokens is not None and not spec.tokens > 0:
            raise RecipeError(file, f"{where}.tokens", f"expected a positive number of tokens, got {spec.tokens!r}")
        if spec.tokens is not None and spec.weight is not None:
            raise RecipeError(file, where, "expected one of 'tokens' (absolute budget) or 'weight' (share), not both")
        if spec.max_epochs is not None and not spec.max_epochs > 0:
            raise RecipeError(file, f"{where}.max_epochs", f"expected a positive number, got {spec.max_epochs!r}")
        if spec.language is not None and spec.language not in LANGUAGES:
            raise RecipeError(
                file, f"{where}.language", f"expected one of {', '.join(LANGUAGES)}, got {spec.language!r}"
            )
        if key == "mixture" and spec.format == "text" and spec.lang is None:
            raise RecipeError(
                file,
                f"{where}.language",
                f"missing: expected one of {', '.join(LANGUAGES)} (it picks the source's filters)",
            )
        formats = (
            ("text", "instruction", "messages")
            if key in ("mixture", "sft_sources", "helpful_sources")
            else ("text", "instruction")
        )
        if spec.format not in formats:
            raise RecipeError(file, f"{where}.format", f"expected one of {', '.join(formats)}, got {spec.format!r}")
        if isinstance(spec.instruction_field, list) and key != "mixture":
            raise RecipeError(
                file,
                f"{where}.instruction_field",
                "expected one column name (several are joined only in pretraining mixtures)",
            )
        if spec.take not in ("train", "heldout"):
            raise RecipeError(file, f"{where}.take", f"expected 'train' or 'heldout', got {spec.take!r}")
        if not 0.0 <= spec.holdout_fraction < 1.0:
            raise RecipeError(file, f"{where}.holdout_fraction", f"expected 0 <= x < 1, got {spec.holdout_fraction}")
        if spec.take == "heldout" and spec.holdout_fraction == 0:
            raise RecipeError(file, f"{where}.holdout_fraction", "take: heldout needs a holdout_fraction above 0")
        if spec.max_docs is not None and spec.max_docs <= 0:
            raise RecipeError(file, f"{where}.max_docs", f"expected a positive number, got {spec.max_docs}")
        _check_redteam_keys(file, where, spec, roots)
        specs.append(spec)
    return specs


# ----------------------------------------------------------------------------- model facts known without loading it
def model_positions(config: dict, input_positions: int | None = None) -> int | None:
    """Learned positions of a stage's model after its patches, when knowable offline (else None)."""
    n = None
    source = config.get("model_name_or_path") or (None if input_positions else config.get("base_config"))
    if source:
        n = (read_config_json(source) or {}).get("n_positions")
    elif input_positions:
        n = input_positions
    for spec in config.get("config_patches", []):
        patch, value = parse_patch(spec)
        if patch.name == "aurora_m":
            keep = int(value) if value else AURORA_M_CONTEXT
            n = min(n, keep) if n else keep
    return n


# ----------------------------------------------------------------------------- one stage
def check_stage_config(
    file: Path,
    kind: str,
    has_model_input: bool = False,
    *,
    overrides: dict | None = None,
    input_positions: int | None = None,
    roots: list[Path] | None = None,
) -> dict:
    """Check one stage YAML (plus command-line overrides) without running anything; returns the mapping."""
    file = Path(file)
    spec = KINDS[kind]
    known_types = field_types(spec.dataclass_types())
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key in source_keys():
            raise RecipeError("command line", f"--{key}", "lists of sources are edited in the stage YAML")
        if isinstance(value, CliValue) and _is_list(known_types.get(key)):
            overrides[key] = [value]  # argparse reads `--config_patches tiny` as a list of one
    config = {**read_yaml(file), **overrides}
    check_keys_and_types(file, config, spec.dataclass_types())
    roots = roots if roots is not None else allowed_roots(file.parent)
    for key, owner in source_keys().items():
        if key in config:
            check_sources(file, key, config[key], need_weights=owner.produces_model, roots=roots)
    if spec.source_key and spec.source_key not in config:
        raise RecipeError(file, spec.source_key, "missing: this stage needs a list of sources")
    if spec.produces_model:
        check_patches(config.get("config_patches", []), file)
        continues = has_model_input or bool(config.get("model_name_or_path"))
        for patch_spec in config.get("config_patches", []):
            patch = PATCHES[patch_spec.partition(":")[0]]
            if continues and patch.from_config_only:
                raise RecipeError(
                    file,
                    "config_patches",
                    f"patch {patch.name!r} reshapes layers, so it only applies to a model built from base_config",
                )
        for i, tok_file in enumerate(config.get("tokenizer_train_files", [])):
            local = check_inside(file, f"tokenizer_train_files[{i}]", resolve_path(file.parent, tok_file), roots)
            if not local.is_file():
                raise RecipeError(file, f"tokenizer_train_files[{i}]", f"file not found: {tok_file}")
        base = config.get("base_config")
        if base and base.endswith(".json"):
            local = check_inside(file, "base_config", resolve_path(file.parent, base), roots)
            if not local.is_file():
                raise RecipeError(file, "base_config", f"file not found: {base}")
        if not (has_model_input or config.get("model_name_or_path") or base):
            raise RecipeError(
                file,
                "model_name_or_path",
                "missing: set model_name_or_path or base_config (or give the stage an input in pipeline.yaml)",
            )
        if base and not config.get("model_name_or_path") and not has_model_input:
            if not (config.get("tokenizer_name_or_path") or config.get("tokenizer_train_files")):
                raise RecipeError(
                    file,
                    "tokenizer_name_or_path",
                    "missing: a model built from base_config needs tokenizer_name_or_path or tokenizer_train_files",
                )
    _check_numbers(file, config, model_positions(config, input_positions) if spec.produces_model else input_positions)
    if "mixture" in config and "train_tokens" not in config:
        raise RecipeError(file, "train_tokens", "missing: the stage's token budget (a positive integer)")
    if "mixture" in config:
        _check_corpus_keys(file, config)
    if "init_from" in config:
        _check_init_from(file, config, has_model_input)
    _check_training_sources(file, config, roots)
    if config.get("use_peft"):
        _check_lora_keys(file, config)
    if {"lm_eval_tasks", "lm_eval_include_path"} & set(config) or "harness" in (config.get("suites") or []):
        _check_lm_eval_keys(file, config, roots)
    if SAFETY_KEYS & set(config) or "safety" in (config.get("suites") or []):
        _check_safety_keys(file, config, roots)
    if "suites" in config:
        _check_suites_and_code(file, config, roots)
    check_extras(file, config)  # report_to, FlashAttention: installed, or one line with the pip extra
    return config


def _check_redteam_keys(file: Path, where: str, spec: SourceSpec, roots: list[Path]) -> None:
    if spec.stratify and spec.format != "instruction":
        raise RecipeError(
            file, f"{where}.stratify", "a stratified split needs format: instruction (pairs with a category column)"
        )
    if spec.stratify and not spec.holdout_fraction > 0:
        raise RecipeError(
            file,
            f"{where}.holdout_fraction",
            "stratify: true splits off a held-out share: expected 0 < holdout_fraction < 1",
        )
    if spec.taxonomy and spec.taxonomy != "aurora-m":
        local = check_inside(file, f"{where}.taxonomy", resolve_path(file.parent, spec.taxonomy), roots)
        if not local.is_file():
            raise RecipeError(
                file,
                f"{where}.taxonomy",
                f"expected 'aurora-m' (built in) or a taxonomy YAML file, got {spec.taxonomy!r} (no such file)",
            )
        from .safety.taxonomy import Taxonomy

        try:
            Taxonomy.load(local)
        except RecipeError as err:
            raise RecipeError(file, f"{where}.taxonomy", f"{spec.taxonomy}: {err}") from None


def _check_lora_keys(file: Path, config: dict) -> None:
    from .train.lora import GPT_BIGCODE_LINEAR

    if "lora_r" in config and not (_number(config["lora_r"]) >= 1 and float(_number(config["lora_r"])).is_integer()):
        raise RecipeError(file, "lora_r", f"expected a positive integer rank, got {config['lora_r']!r}")
    if "lora_dropout" in config and not 0 <= _number(config["lora_dropout"]) < 1:
        raise RecipeError(file, "lora_dropout", f"expected 0 <= x < 1, got {config['lora_dropout']!r}")
    targets = config.get("lora_target_modules") or []
    unknown = [t for t in ([targets] if isinstance(targets, str) else targets) if t not in GPT_BIGCODE_LINEAR]
    if unknown and targets != "all-linear":
        raise RecipeError(
            file,
            "lora_target_modules",
            f"{', '.join(map(str, unknown))}: not a GPTBigCode linear layer (expected some of "
            f"{', '.join(GPT_BIGCODE_LINEAR)}, or all-linear)",
        )


def _check_training_sources(file: Path, config: dict, roots: list[Path]) -> None:
    """A training stage's extra source lists (general instructions, held-out test prompts) and their knobs."""
    from .args import SFT_FORMATS, TRAINING_SOURCE_LISTS

    for key in TRAINING_SOURCE_LISTS:
        if config.get(key):
            check_sources(file, key, config[key], need_weights=False, roots=roots)
    share = config.get("helpfulness_share")
    if share is not None and not 0 <= _number(share) < 1:
        raise RecipeError(file, "helpfulness_share", f"expected 0 <= x < 1 (a share of the SFT rows), got {share!r}")
    if share is not None and _number(share) > 0 and not config.get("helpful_sources"):
        raise RecipeError(
            file, "helpful_sources", "missing: helpfulness_share draws from these general instruction sources"
        )
    if "sft_format" in config and config["sft_format"] not in SFT_FORMATS:
        raise RecipeError(
            file, "sft_format", f"expected one of {', '.join(SFT_FORMATS)}, got {config['sft_format']!r}"
        )
    threshold = config.get("leakage_threshold")
    if threshold is not None and not 0 < _number(threshold) <= 1:
        raise RecipeError(file, "leakage_threshold", f"expected 0 < x <= 1 (a Jaccard similarity), got {threshold!r}")


def _number(value) -> float:
    """A YAML or command-line number (``"2"``, ``"3e-4"``) as a float; NaN for anything else."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


POSITIVE_KEYS = (
    "max_steps",
    "num_train_epochs",
    "train_tokens",
    "seq_length",
    "max_length",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "max_doc_chars",
    "max_epochs",
    "intermediate_file_mb",
    "data_workers",
    "data_tasks",
    "slurm_cpus_per_task",
    "slurm_mem_per_cpu_gb",
)


def _check_corpus_keys(file: Path, config: dict) -> None:
    """The cleaning and mixing keys of a pretrain stage, checked before any document is read."""
    from .args import PROSE_LANGUAGES

    def where(key):
        return ("command line", f"--{key}") if isinstance(config[key], CliValue) else (file, key)

    def number(key, low, high, low_open=False, high_open=False):
        if key not in config or config[key] is None:
            return
        x = _number(config[key])
        ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
        if not ok:
            bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise RecipeError(*where(key), f"expected a number in {bounds}, got {config[key]!r}")

    number("max_symbol_digit_ratio", 0, 1, low_open=True)
    number("fim_rate", 0, 1)
    number("fim_spm_rate", 0, 1)
    number("replay_share", 0, 1, high_open=True)
    number("temperature", 0, math.inf, low_open=True, high_open=True)
    number("mixture_seed", 0, 2**63)
    number("heldout_blocks", 0, 2**31)
    number("forgetting_threshold", 0, math.inf, low_open=True, high_open=True)
    if config.get("forgetting_probes"):
        from .train.monitor import PROBES  # the registry the evaluation suites add to

        for name in config["forgetting_probes"]:
            if name not in PROBES:
                raise RecipeError(
                    *where("forgetting_probes"),
                    f"unknown probe {name!r}{_did_you_mean(str(name), PROBES)}: expected some of {', '.join(PROBES)}",
                )
    choices = {"mislabelled": ("drop", "reroute"), "data_executor": ("local", "slurm")}
    for key, allowed in choices.items():
        if key in config and config[key] not in allowed:
            raise RecipeError(*where(key), f"expected one of {', '.join(allowed)}, got {config[key]!r}")
    scores = config.get("language_id_min_score") or {}
    for lang, score in scores.items():
        if lang not in PROSE_LANGUAGES:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected one of {', '.join(PROSE_LANGUAGES)}")
        if not 0 <= _number(score) <= 1:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected a score in [0, 1], got {score!r}")
    from .data.clean import quality_filters

    overrides = config.get("quality_overrides") or {}
    try:
        quality_filters(list(config.get("quality_filters", ["gopher_quality"])), dict(overrides))
    except ValueError as err:
        key = "quality_overrides" if any(str(k) in str(err) for k in overrides) else "quality_filters"
        raise RecipeError(file, key, str(err)) from None
    for name, settings in overrides.items():
        for k, v in (settings or {}).items():
            if not (v is None or isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool)):
                raise RecipeError(file, f"quality_overrides.{name}.{k}", f"expected a number, got {v!r}")
    sources = [s for s in config["mixture"] if isinstance(s, dict)]
    replay = [s for s in sources if s.get("replay")]
    for s in replay:
        if s.get("weight") is not None or s.get("tokens") is not None:
            raise RecipeError(
                file,
                f"mixture[{s.get('name')}]",
                "a replay source takes its share from replay_share (by natural size): no weight or tokens",
            )
    share = _number(config.get("replay_share", 0) or 0)
    if replay and not share > 0:
        names = ", ".join(str(s.get("name")) for s in replay)
        raise RecipeError(
            file, "replay_share", f"a share above 0: sources {names} are marked replay: true and would get no tokens"
        )
    if share > 0 and not replay:
        raise RecipeError(*where("replay_share"), "a source marked replay: true to draw the replay share from")
    if config.get("temperature") is not None:
        for s in sources:
            if s.get("weight") is not None:
                raise RecipeError(
                    file,
                    f"mixture[{s.get('name')}].weight",
                    "no weight when the stage sets a temperature (shares come from natural sizes)",
                )


def _check_lm_eval_keys(file: Path, config: dict, roots: list[Path]) -> None:
    """The harness suite's keys: entries well formed, the include folder there, lm-eval installed. Task names are
    checked when the stage starts: indexing lm-eval's thousands of task YAMLs takes seconds."""
    from .evaluation.harness import requested_tasks
    from .extras import importable, install_hint

    requested_tasks(config.get("lm_eval_tasks") or {}, file)
    if config.get("lm_eval_include_path"):
        folder = config["lm_eval_include_path"]
        local = check_inside(file, "lm_eval_include_path", resolve_path(file.parent, folder), roots)
        if not local.is_dir():
            raise RecipeError(file, "lm_eval_include_path", f"{folder} is not a folder")
    if "harness" in (config.get("suites") or []):
        if not config.get("lm_eval_tasks"):
            raise RecipeError(file, "lm_eval_tasks", "missing: the harness suite needs lm-eval tasks per language")
        if not importable("lm_eval"):
            raise RecipeError(
                file,
                "suites",
                f"the harness suite needs lm-eval, which is not installed here: {install_hint('eval', 'lm-eval')}",
            )


SAFETY_KEYS = {
    "safety_sources",
    "benign_sources",
    "safety_judge",
    "jailbreak_templates",
    "safety_max_new_tokens",
    "safety_max_prompts",
}


def _check_safety_keys(file: Path, config: dict, roots: list[Path]) -> None:
    """The safety suite's keys: its red-team and benign source lists checked like any source list, the judge and
    the jailbreak template names known (a classifier id is only loaded when the stage runs)."""
    from .args import EXTRA_SOURCE_LISTS
    from .evaluation.safety.judge import judge_name_problem
    from .evaluation.safety.templates import template_name_problem

    def where(key):
        value = config[key]
        cli = isinstance(value, CliValue) or (isinstance(value, list) and any(isinstance(v, CliValue) for v in value))
        return ("command line", f"--{key}") if cli else (file, key)

    for key in EXTRA_SOURCE_LISTS:
        if config.get(key):
            check_sources(file, key, config[key], need_weights=False, roots=roots)
    if "safety_judge" in config and (problem := judge_name_problem(str(config["safety_judge"]))):
        raise RecipeError(*where("safety_judge"), problem)
    for name in config.get("jailbreak_templates") or []:
        if problem := template_name_problem(str(name)):
            raise RecipeError(*where("jailbreak_templates"), problem)
    for key in ("safety_max_new_tokens", "safety_max_prompts"):
        if config.get(key) is not None and not _number(config[key]) > 0:
            raise RecipeError(*where(key), f"expected a positive number, got {config[key]!r}")
    if "safety" in (config.get("suites") or []) and not config.get("safety_sources"):
        raise RecipeError(
            file,
            "safety_sources",
            "missing: the safety suite needs red-team prompts (held out from "
            "training: take: heldout with the training split's fraction)",
        )


def _check_suites_and_code(file: Path, config: dict, roots: list[Path]) -> None:
    """Suite and benchmark names known; MBPP has a source; sampling settings that make sense."""
    from .args import CODE_BENCHMARKS, EVAL_SUITES

    def where(key):
        value = config[key]
        cli = isinstance(value, CliValue) or (isinstance(value, list) and any(isinstance(v, CliValue) for v in value))
        return ("command line", f"--{key}") if cli else (file, key)

    for key, known in (("suites", EVAL_SUITES), ("code_problems", CODE_BENCHMARKS)):
        for name in config.get(key) or []:
            if name not in known:
                raise RecipeError(
                    *where(key),
                    f"unknown {name!r}{_did_you_mean(str(name), known)}: expected some of {', '.join(known)}",
                )
    if not config.get("suites"):
        raise RecipeError(*where("suites"), "empty: name at least one of " + ", ".join(EVAL_SUITES))
    if "code" not in config["suites"]:
        return
    if "mbpp" in (config.get("code_problems") or []):
        if not isinstance(config.get("mbpp_source"), dict):
            raise RecipeError(
                file,
                "mbpp_source",
                "missing: code_problems names mbpp; give a source entry "
                "({dataset: google-research-datasets/mbpp, ...} or {path: FILE})",
            )
        check_sources(
            file, "mbpp_source", [{"name": "mbpp", **config["mbpp_source"]}], need_weights=False, roots=roots
        )
    for key in ("code_max_new_tokens", "code_batch_size", "code_timeout_s", "code_memory_mb", "code_max_problems"):
        if config.get(key) is not None and not _number(config[key]) > 0:
            raise RecipeError(*where(key), f"expected a positive number, got {config[key]!r}")
    samples = int(_number(config.get("code_samples", 0)) or 0)
    if samples and not 0 < _number(config.get("code_temperature", 0.8)):
        raise RecipeError(
            *where("code_temperature") if "code_temperature" in config else (file, "code_temperature"),
            "sampled pass@k needs a temperature above 0",
        )
    too_big = [k for k in config.get("code_k") or [] if samples and int(_number(k)) > samples]
    if too_big:
        raise RecipeError(*where("code_k"), f"k {too_big} above code_samples {samples}: pass@k needs k <= n")


def _check_init_from(file: Path, config: dict, has_model_input: bool) -> None:
    from .args import INIT_FROM

    where = ("command line", "--init_from") if isinstance(config["init_from"], CliValue) else (file, "init_from")
    if config["init_from"] not in INIT_FROM:
        raise RecipeError(*where, f"expected one of {', '.join(INIT_FROM)}, got {config['init_from']!r}")
    if config["init_from"] == "full_state" and not (
        has_model_input or config.get("model_name_or_path") or config.get("init_state_from")
    ):
        raise RecipeError(
            *where,
            "full_state carries on an upstream stage's optimizer: give the stage an input "
            "in pipeline.yaml (or model_name_or_path of a local stage's model)",
        )


def _is_list(tp) -> bool:
    return (
        tp is list
        or typing.get_origin(tp) is list
        or any(
            _is_list(arm) for arm in typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType)
        )
    )


def _check_numbers(file: Path, config: dict, positions: int | None) -> None:
    """Counts that must be positive, a learning rate that is a number, lengths within the learned positions."""

    def where(key):
        return ("command line", f"--{key}") if isinstance(config[key], CliValue) else (file, key)

    for key in POSITIVE_KEYS:
        if key in config and config[key] is not None and not _number(config[key]) > 0:
            hint = "; leave max_steps out to train num_train_epochs" if key == "max_steps" else ""
            raise RecipeError(*where(key), f"expected a positive number, got {config[key]!r}{hint}")
    if "learning_rate" in config and not (
        math.isfinite(_number(config["learning_rate"])) and _number(config["learning_rate"]) >= 0
    ):
        raise RecipeError(*where("learning_rate"), f"expected a finite number >= 0, got {config['learning_rate']!r}")
    for key in ("seq_length", "max_length"):
        if positions and config.get(key) is not None and _number(config[key]) > positions:
            raise RecipeError(
                *where(key),
                f"{config[key]} is longer than the model's {positions} learned positions "
                f"(n_positions after config_patches)",
            )
    if (
        "train_tokens" in config
        and "seq_length" in config
        and _number(config["train_tokens"]) < _number(config["seq_length"])
    ):
        raise RecipeError(
            *where("train_tokens"),
            f"{config['train_tokens']} is less than one sequence of {config['seq_length']} tokens",
        )


def overrides_to_dict(overrides: list[str] | None) -> dict:
    """``["--learning_rate", "2e-4", "--bf16=true", "--eval_models", "a=x", "b=y"]`` as a mapping (of CliValue)."""
    out, args = {}, list(overrides or [])
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise RecipeError("command line", None, f"expected --key value overrides, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        values = [value] if eq else []
        while not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
            values.append(args[i + 1])
            i += 1
        typed = [CliValue(v) for v in values] or [BareFlag("true")]  # a bare flag, as argparse reads booleans
        out[key] = typed[0] if len(typed) == 1 else typed
        i += 1
    return out


def parse_stage(
    file: Path,
    kind: str,
    overrides: list[str] | None = None,
    *,
    validate_only: bool = False,
    has_model_input: bool = False,
    input_positions: int | None = None,
):
    """Parse a stage YAML into its dataclasses with TrlParser (``--key value`` overrides win).

    Relative data paths are resolved against the YAML's folder. With ``validate_only`` the
    machine-dependent check (bf16 needs a GPU) is set aside: validation is about the recipe.
    """
    from trl import TrlParser

    file = Path(file)
    has_model_input = has_model_input or "--model_name_or_path" in (overrides or [])
    check_stage_config(
        file,
        kind,
        has_model_input=has_model_input,
        overrides=overrides_to_dict(overrides),
        input_positions=input_positions,
    )
    argv = ["--config", str(file), *(overrides or [])]
    if validate_only and "use_cpu" in {f.name for dc in stage_dataclasses(kind) for f in fields(dc)}:
        argv += ["--use_cpu", "true"]
    try:
        parsed = TrlParser(stage_dataclasses(kind)).parse_args_and_config(argv)
    except (ValueError, TypeError) as err:
        raise RecipeError(file, None, str(err)) from None
    except SystemExit as err:  # argparse already printed its one line (an override it does not know)
        raise RecipeError(file, None, "invalid command-line override (see the line above)") from err
    for args in parsed:
        resolve_input_paths(args, file.parent)
    return parsed


def resolve_input_paths(args, base: Path) -> None:
    """Relative paths in parsed dataclasses become absolute (relative to the stage YAML's folder)."""
    from .args import EXTRA_SOURCE_LISTS, LOCAL_PATH_KEYS, SINGLE_SOURCE_KEYS

    for key in [*source_keys(), *EXTRA_SOURCE_LISTS, *SINGLE_SOURCE_KEYS]:
        value = getattr(args, key, None) or []
        for source in [value] if isinstance(value, dict) else value:
            if isinstance(source, dict) and source.get("path"):
                source["path"] = str(resolve_path(base, source["path"]).resolve())
            if isinstance(source, dict) and source.get("taxonomy") not in (None, "aurora-m"):
                source["taxonomy"] = str(resolve_path(base, source["taxonomy"]).resolve())
    for key in LOCAL_PATH_KEYS:
        if getattr(args, key, None):
            setattr(args, key, str(resolve_path(base, getattr(args, key)).resolve()))
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
    if "stages" not in raw:
        raise RecipeError(file, "stages", "missing: expected a list of stages")
    if not raw["stages"]:
        raise RecipeError(file, "stages", "empty: expected at least one stage")
    roots = allowed_roots(recipe_dir)
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
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
            raise RecipeError(file, f"{where}.name", f"expected letters, digits, '-' or '_', got {name!r}")
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
        available = list(KINDS[kind].runners)
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
            )
            if stage.produces_model:
                recipe.positions[stage.name] = model_positions(config, recipe.input_positions(stage))
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


# ----------------------------------------------------------------------------- saved configs
def redact_overrides(overrides: list[str]) -> list[str]:
    """``["--hub_token", "hf_...", "--lr", "2e-4"]`` with secret values replaced, for summary.json."""
    out, hide_next = [], False
    for arg in overrides:
        if hide_next and not arg.startswith("--"):
            out.append("***")
            continue
        key, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        hide_next = bool(key) and not eq and bool(SECRET_KEY.search(key))
        out.append(f"--{key}=***" if eq and SECRET_KEY.search(key) else SECRET_VALUE.sub("***", arg))
    return out


def redact(value):
    """A copy with secrets replaced, for configs saved next to a run or into a model card."""
    if isinstance(value, dict):
        return {
            k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "", False) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if is_dataclass(value):
        return redact({f.name: getattr(value, f.name) for f in fields(value)})
    if isinstance(value, str):
        return SECRET_VALUE.sub("***", value)
    return value
