"""One stage YAML checked and parsed: the checks every kind shares, then the kind's own (the kinds table).

:func:`check_stage_config` reads a stage's mapping (YAML plus ``--key value`` overrides) and refuses, in one
line naming the file (or the command line) and the key, anything its dataclasses do not accept: unknown keys,
wrong types, sources that do not check (``source_spec``), model settings that cannot work, counts that are not
positive, lengths past the model's learned positions. A kind's own keys (a corpus's filters, LoRA, the eval
suites) are checked by the functions its :class:`~aurora_m.stages.StageKind` names in ``checks``, which live
in the package that owns those keys and are imported only when a stage of that kind is checked.
:func:`parse_stage` then fills the dataclasses with TrlParser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from .budget import check_stage_budget
from .errors import RecipeError
from .extras import check_extras
from .model_families import ALL_LINEAR, model_facts, tokenizer_mismatch
from .overrides import (
    CliValue,
    check_keys_and_types,
    check_positive,
    field_types,
    is_list,
    number,
    origin,
    overrides_to_dict,
    read_yaml,
)
from .patches import AURORA_M_CONTEXT, PATCHES, check_patches, parse_patch, patched_config, read_config_json
from .roots import allowed_roots, check_inside, resolve_path
from .source_spec import BUILTIN_TAXONOMY, SOURCE_LISTS, check_sources
from .stages import DEFAULT_ENGINE, KINDS, StageKind, engines

# counts that must be positive wherever a stage sets them
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


@dataclass
class StageConfig:
    """What a kind's own checks receive: the stage's mapping and where it came from."""

    file: Path
    kind: str
    config: dict
    roots: list[Path]
    has_model_input: bool = False
    # the stage's model config (after its patches) as far as it is known offline: a local config.json, or the
    # input stage's model; None for a Hub id. What the family table is read from (LoRA targets, positions)
    model: dict | None = None

    def origin(self, key: str) -> tuple[object, str]:
        """``(file, key)`` or ``("command line", "--key")``, for a RecipeError about ``key``."""
        return origin(self.config, key, self.file)

    def local(self, key: str, path: str, *, folder: bool = False) -> Path:
        """A file (or folder) the stage names, inside the recipe's folders and there; else one line."""
        local = check_inside(self.file, key, resolve_path(self.file.parent, path), self.roots)
        if not (local.is_dir() if folder else local.is_file()):
            raise RecipeError(self.file, key, f"{path} is not a folder" if folder else f"file not found: {path}")
        return local


def stage_dataclasses(kind: str, engine: str = DEFAULT_ENGINE) -> tuple[type, ...]:
    """The dataclasses a stage YAML of this kind fills on ``engine`` (transformers / trl imported when asked)."""
    return KINDS[kind].dataclass_types(engine)


def _engine_keys(engine: str) -> dict[str, str]:
    """The keys other engines add (key -> engine), so that one given to a stage on another engine says so."""
    out = {}
    for other in engines():
        if other.name != engine and (arguments := other.hook("arguments")):
            out.update({f.name: other.name for f in fields(arguments)})
    return out


def source_keys() -> dict[str, StageKind]:
    """Every list of sources a kind requires, and the kind that requires it."""
    return {k.source_key: k for k in KINDS.values() if k.source_key}


def source_list_keys() -> list[str]:
    """Every key of a stage YAML that holds sources: the registered lists and each kind's own."""
    return list(dict.fromkeys([*SOURCE_LISTS, *source_keys()]))


def model_positions(config: dict, input_positions: int | None = None, model: dict | None = None) -> int | None:
    """Positions of a stage's model after its patches, when knowable offline (else None). ``model``: its config
    mapping after the patches (:func:`stage_model`), which knows best."""
    if model is not None and model_facts(model).positions:
        return model_facts(model).positions
    n = input_positions
    for spec in config.get("config_patches", []):
        patch, value = parse_patch(spec)
        if patch.name == "aurora_m":
            keep = int(value) if value else AURORA_M_CONTEXT
            n = min(n, keep) if n else keep
    return n


def _model_source(file: Path, config: dict, input_model: dict | None) -> tuple[str | None, dict | None]:
    """(the key that names the stage's starting model, its config mapping when readable here)."""
    if config.get("model_name_or_path"):
        source = str(resolve_path(file.parent, config["model_name_or_path"]))
        return "model_name_or_path", read_config_json(
            source if Path(source).exists() else config["model_name_or_path"]
        )
    if input_model is not None:
        return "inputs", input_model
    if config.get("base_config"):
        base = config["base_config"]
        return "base_config", read_config_json(
            str(resolve_path(file.parent, base)) if base.endswith(".json") else base
        )
    return None, None


def stage_model(file: Path, config: dict, input_model: dict | None = None) -> dict | None:
    """The config mapping of a stage's model after its patches (None when not readable offline: a Hub id).
    Raises RecipeError naming the patch that does not apply to that model."""
    key, data = _model_source(Path(file), config, input_model)
    if data is None:
        return None
    try:
        return patched_config(data, config.get("config_patches", []), from_weights=key != "base_config")
    except ValueError as err:
        raise RecipeError(file, "config_patches", str(err)) from None


# ----------------------------------------------------------------------------- one stage


def check_stage_config(
    file: Path,
    kind: str,
    has_model_input: bool = False,
    *,
    overrides: dict | None = None,
    input_positions: int | None = None,
    roots: list[Path] | None = None,
    engine: str = DEFAULT_ENGINE,
    input_model: dict | None = None,
) -> dict:
    """Check one stage YAML (plus command-line overrides) without running anything; returns the mapping."""
    file = Path(file)
    spec = KINDS[kind]
    dataclass_types = spec.dataclass_types(engine)
    known_types = field_types(dataclass_types)
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key in source_list_keys():
            raise RecipeError(*origin(overrides, key, file), "lists of sources are edited in the stage YAML")
        if isinstance(value, CliValue) and is_list(known_types.get(key)):
            overrides[key] = [value]  # argparse reads `--config_patches tiny` as a list of one
    config = {**read_yaml(file), **overrides}
    if config.get("lora_target_modules") == ALL_LINEAR:  # peft's shorthand is a string, the field a list
        config["lora_target_modules"] = [ALL_LINEAR]
    check_keys_and_types(file, config, dataclass_types, _engine_keys(engine))
    roots = roots if roots is not None else allowed_roots(file.parent)
    stage = StageConfig(file, kind, config, roots, has_model_input, model=input_model)
    for key in source_list_keys():
        if config.get(key) or (key == spec.source_key and key in config):
            check_sources(file, key, config[key], roots=stage.roots)
    if spec.source_key and spec.source_key not in config:
        raise RecipeError(file, spec.source_key, "missing: this stage needs a list of sources")
    if spec.produces_model:
        _check_model_keys(stage, engine, input_model)
    positions = model_positions(config, input_positions, stage.model) if spec.produces_model else input_positions
    _check_numbers(stage, positions)
    if engine == DEFAULT_ENGINE:  # nanotron counts its data-parallel ranks in its own config step
        _check_budget(stage, dataclass_types)
    for check in spec.key_checks():  # the kind's own keys, checked by the package that owns them
        check(stage)
    check_extras(file, config)  # report_to, FlashAttention: installed, or one line with the pip extra
    return config


def _check_model_keys(stage: StageConfig, engine: str, input_model: dict | None) -> None:
    """Patches that apply to the model, tokenizer files and a base config that are there, a model to start from,
    an engine that trains its family, a config vocabulary that fits the tokenizer."""
    file, config = stage.file, stage.config
    check_patches(config.get("config_patches", []), file)
    continues = stage.has_model_input or bool(config.get("model_name_or_path"))
    for i, tok_file in enumerate(config.get("tokenizer_train_files", [])):
        stage.local(f"tokenizer_train_files[{i}]", tok_file)
    base = config.get("base_config")
    if base and base.endswith(".json"):
        stage.local("base_config", base)
    if not (continues or base):
        raise RecipeError(
            file,
            "model_name_or_path",
            "missing: set model_name_or_path or base_config (or give the stage an input in pipeline.yaml)",
        )
    if base and not continues and not (config.get("tokenizer_name_or_path") or config.get("tokenizer_train_files")):
        raise RecipeError(
            file,
            "tokenizer_name_or_path",
            "missing: a model built from base_config needs tokenizer_name_or_path or tokenizer_train_files",
        )
    for patch_spec in config.get("config_patches", []):
        if continues and PATCHES[patch_spec.partition(":")[0]].from_config_only:
            raise RecipeError(
                file,
                "config_patches",
                f"patch {patch_spec!r} reshapes layers, so it only applies to a model built from base_config",
            )
    input_model = input_model if stage.has_model_input else None
    key = _model_source(file, config, input_model)[0]
    stage.model = stage_model(file, config, input_model)
    if stage.model is None:
        return
    facts = model_facts(stage.model)
    if engine not in facts.family.engines:
        raise RecipeError(
            file,
            key if key != "inputs" else "engine",
            f"a {facts.family.name} model ({facts.model_type}{', from the input stage' if key == 'inputs' else ''}): "
            f"the {engine} engine trains {', '.join(_families_of(engine))} only; run this stage on "
            "engine: transformers in pipeline.yaml",
        )
    patches = [spec.partition(":")[0] for spec in config.get("config_patches", [])]
    if key == "base_config" and config.get("tokenizer_train_files") and "tokenizer_vocab" not in patches:
        # the trained tokenizer: up to tokenizer_vocab_size tokens, <|endoftext|> (id 0) its bos and eos
        vocab = int(number(config.get("tokenizer_vocab_size", 4096)))
        if problem := tokenizer_mismatch(facts, vocab, 0, 0):
            raise RecipeError(
                file,
                "base_config",
                f"{base}: {problem} (the tokenizer trained from tokenizer_train_files): write the tokenizer's in the "
                "config, or add tokenizer_vocab to config_patches to take them from the tokenizer",
            )


def _families_of(engine: str) -> list[str]:
    from .model_families import FAMILIES

    return [f.name for f in FAMILIES.values() if engine in f.engines]


def _check_numbers(stage: StageConfig, positions: int | None) -> None:
    """Counts that must be positive, a learning rate that is a number, lengths within the learned positions."""
    config = stage.config
    if config.get("max_steps") is not None and not number(config["max_steps"]) > 0:
        raise RecipeError(
            *stage.origin("max_steps"),
            f"expected a positive number, got {config['max_steps']!r}; leave max_steps out to train num_train_epochs",
        )
    check_positive(stage.file, config, *POSITIVE_KEYS)
    rate = number(config.get("learning_rate", 0))
    if not (math.isfinite(rate) and rate >= 0):
        raise RecipeError(
            *stage.origin("learning_rate"), f"expected a finite number >= 0, got {config['learning_rate']!r}"
        )
    family = model_facts(stage.model).family if stage.model is not None else None
    learned = family is None or family.learned_positions
    for key in ("seq_length", "max_length"):
        if positions and config.get(key) is not None and number(config[key]) > positions:
            raise RecipeError(
                *stage.origin(key),
                f"{config[key]} is longer than the model's {positions} {'learned ' if learned else ''}positions "
                f"({family.positions_key if family else 'n_positions'} after config_patches)",
            )
    if (
        "train_tokens" in config
        and "seq_length" in config
        and number(config["train_tokens"]) < number(config["seq_length"])
    ):
        raise RecipeError(
            *stage.origin("train_tokens"),
            f"{config['train_tokens']} is less than one sequence of {config['seq_length']} tokens",
        )


def _check_budget(stage: StageConfig, dataclass_types) -> None:
    """A stated ``max_steps`` against the token budget over this launch's ranks (``budget.py``), before any
    data step: the same arithmetic and the same line as the trainer's."""
    defaults = {f.name: f.default for cls in dataclass_types for f in fields(cls)}
    check_stage_budget(stage.config, defaults, stage.origin)


def parse_stage(
    file: Path,
    kind: str,
    overrides: list[str] | None = None,
    *,
    validate_only: bool = False,
    has_model_input: bool = False,
    input_positions: int | None = None,
    engine: str = DEFAULT_ENGINE,
    input_model: dict | None = None,
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
        engine=engine,
        input_model=input_model,
    )
    argv = ["--config", str(file), *(overrides or [])]
    if validate_only and "use_cpu" in {f.name for dc in stage_dataclasses(kind, engine) for f in fields(dc)}:
        argv += ["--use_cpu", "true"]
    try:
        parsed = TrlParser(stage_dataclasses(kind, engine)).parse_args_and_config(argv)
    except (ValueError, TypeError) as err:
        raise RecipeError(file, None, str(err)) from None
    except SystemExit as err:  # argparse already printed its one line (an override it does not know)
        raise RecipeError(file, None, "invalid command-line override (see the line above)") from err
    for args in parsed:
        resolve_input_paths(args, file.parent)
    return parsed


def resolve_input_paths(args, base: Path) -> None:
    """Relative paths in parsed dataclasses become absolute (relative to the stage YAML's folder)."""
    from .args import LOCAL_PATH_KEYS

    for key in source_list_keys():
        value = getattr(args, key, None) or []
        for source in [value] if isinstance(value, dict) else value:
            if isinstance(source, dict) and source.get("path"):
                source["path"] = str(resolve_path(base, source["path"]).resolve())
            if isinstance(source, dict) and source.get("taxonomy") not in (None, BUILTIN_TAXONOMY):
                source["taxonomy"] = str(resolve_path(base, source["taxonomy"]).resolve())
    for key in LOCAL_PATH_KEYS:
        if getattr(args, key, None):
            setattr(args, key, str(resolve_path(base, getattr(args, key)).resolve()))
    if hasattr(args, "tokenizer_train_files"):  # ModelArguments
        args.tokenizer_train_files = [str(resolve_path(base, p).resolve()) for p in args.tokenizer_train_files]
        if args.base_config and args.base_config.endswith(".json"):
            args.base_config = str(resolve_path(base, args.base_config).resolve())
