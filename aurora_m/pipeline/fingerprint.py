"""What makes a step's result: its configuration (minus keys that cannot change it), the content of every
local file it reads, and the fingerprints of the steps it reads from.

File contents are hashed once and cached by (path, size, mtime): a re-run hashes nothing unless a
file changed. Keys that only change logging, saving, reporting or the split of a batch into
micro-batches and accumulation do not invalidate a step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..io import read_json_or_none, write_json
from ..layout import RunLayout
from ..overrides import field_types, overrides_to_dict, read_yaml, typed_cli_value
from ..recipe import Recipe, StageSpec
from ..roots import resolve_path
from ..source_spec import BUILTIN_TAXONOMY
from ..stage_checks import source_list_keys

# Keys that cannot change what a step computes: how often it logs, saves or evaluates, where it
# reports, how many workers load data, where outputs go, Hub pushes, and the env block.
IGNORED_KEYS = frozenset(
    {
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "logging_dir",
        "logging_nan_inf_filter",
        "save_steps",
        "save_strategy",
        "save_total_limit",
        "save_safetensors",
        "save_on_each_node",
        "eval_steps",
        "eval_strategy",
        "eval_delay",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "output_dir",
        "dataset_dir",
        "resume_from_checkpoint",
        "disable_tqdm",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "env",
    }
)
BATCH_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps")
BATCH_PRODUCT = "per_device_train_batch_size x gradient_accumulation_steps"
TRAINER_DEFAULT_BATCH = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}


def canonical(value):
    """One spelling per value: YAML reads ``3e-4`` as a string and ``3.0e-4`` as a float, the command line
    gives ``"2"`` and ``"true"``; each means the same as the YAML number or boolean."""
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
        return str(value)
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def result_config(config: dict, keys: set[str] | None = None) -> dict:
    """The part of a stage's mapping that can change a step's result, with batch x accumulation merged."""
    out = {k: canonical(v) for k, v in config.items() if k not in IGNORED_KEYS and (keys is None or k in keys)}
    if any(k in out for k in BATCH_KEYS):
        product = 1
        for key in BATCH_KEYS:
            product *= int(out.pop(key, TRAINER_DEFAULT_BATCH[key]))
        out[BATCH_PRODUCT] = product  # micro-batch x accumulation: only the product matters
    return dict(sorted(out.items()))


def _named(value) -> dict | None:
    """A list of sources as {name: source}, or None for any other value."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return {v["name"]: v for v in value}
    return None


TOKENIZER_KEYS = (
    "tokenizer_name_or_path",
    "tokenizer_train_files",
    "tokenizer_vocab_size",
    "model_name_or_path",
    "model_revision",
)


def describe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``["learning_rate 0.003 -> 0.002", "mixture[fi].weight 1.0 -> 2.0", "mixture[wiki] added"]``."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(unset)"), new.get(key, "(unset)")
        if a == b:
            continue
        label = f"{prefix}{key}"
        named_a, named_b = _named(a), _named(b)
        if named_a is not None and named_b is not None:
            for name in [*named_a, *(n for n in named_b if n not in named_a)]:
                if name not in named_b:
                    changes.append(f"{label}[{name}] removed")
                elif name not in named_a:
                    changes.append(f"{label}[{name}] added")
                else:
                    changes += describe_changes(named_a[name], named_b[name], f"{label}[{name}].")
            if list(named_a) != list(named_b) and set(named_a) == set(named_b):
                changes.append(f"{label} reordered")
        elif isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
            changes.append(f"{label} changed")
        else:
            changes.append(f"{label} {a} -> {b}")
    return changes


class FileHashes:
    """Content hashes of input files, cached in the run folder by (size, mtime)."""

    def __init__(self, cache_file: Path):
        self.cache_file = cache_file
        self.cache = read_json_or_none(cache_file) or {}
        self.dirty = False

    def digest(self, path: Path) -> str:
        path = path.resolve()
        stat = path.stat()
        key = str(path)
        cached = self.cache.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        h = hashlib.blake2b(digest_size=16)
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        self.cache[key] = [stat.st_size, stat.st_mtime_ns, h.hexdigest()]
        self.dirty = True
        return h.hexdigest()

    def digest_any(self, path: Path) -> str:
        """A file's digest, or a folder's (its files' names and digests)."""
        if path.is_dir():
            h = hashlib.blake2b(digest_size=16)
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(f"{sub.relative_to(path)}={self.digest(sub)};".encode())
            return h.hexdigest()
        return self.digest(path)

    def save(self) -> None:
        if self.dirty and self.cache_file.parent.is_dir():
            write_json(self.cache_file, self.cache)
            self.dirty = False


def local_files(config: dict, base: Path, has_model_input: bool) -> dict[str, Path]:
    """Every local file or folder a stage reads, by the key that names it."""
    from ..args import LOCAL_PATH_KEYS

    files = {}
    for key in source_list_keys():
        value = config.get(key) or []
        for i, source in enumerate([value] if isinstance(value, dict) else value):
            if isinstance(source, dict) and source.get("path"):
                files[f"{key}[{i}] {source['path']}"] = resolve_path(base, source["path"])
            if isinstance(source, dict) and source.get("taxonomy") not in (None, BUILTIN_TAXONOMY):
                files[f"{key}[{i}] {source['taxonomy']}"] = resolve_path(base, source["taxonomy"])
    for key in LOCAL_PATH_KEYS:
        if config.get(key):
            files[f"{key} {config[key]}"] = resolve_path(base, config[key])
    for i, name in enumerate(config.get("tokenizer_train_files") or []):
        files[f"tokenizer_train_files[{i}] {name}"] = resolve_path(base, name)
    for key in ("base_config", "tokenizer_name_or_path", "model_name_or_path"):
        value = config.get(key)
        if not value or (key == "model_name_or_path" and has_model_input):
            continue
        path = resolve_path(base, value)
        if path.exists():  # a local file or folder; otherwise a bundled name or a Hub id, fingerprinted by name
            files[f"{key} {value}"] = path
    return files


@dataclass
class StepPrint:
    """One step's fingerprint and what it was made of (kept in its marker, for "what changed" messages)."""

    fingerprint: str
    config: dict
    files: dict[str, str]
    inputs: dict[str, str] = field(default_factory=dict)  # "stage/step" -> fingerprint
    # what the stage's YAML does not hold but the fingerprint does: its kind, engine and (a standalone data
    # step's) tokenizer, so a change there is named too
    origin: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "config": self.config,
            "files": self.files,
            "inputs": self.inputs,
            "origin": self.origin,
        }


class Fingerprints:
    """Fingerprints of every step of a recipe, computed once per run (the recipe does not change mid-run)."""

    def __init__(self, recipe: Recipe, layout: RunLayout, overrides: dict[str, list[str]] | None = None):
        self.recipe = recipe
        self.layout = layout
        self.overrides = overrides or {}
        self.hashes = FileHashes(layout.file_hashes)
        self._memo: dict[tuple[str, str], StepPrint] = {}

    def stage_config(self, stage: StageSpec) -> dict:
        overrides = overrides_to_dict(self.overrides.get(stage.name))
        if overrides:  # typed as the dataclasses read them: `--bf16 no` is the YAML's `bf16: false`
            types = field_types(stage.spec.dataclass_types(stage.engine))
            overrides = {k: typed_cli_value(v, types.get(k, str)) for k, v in overrides.items()}
        return {**read_yaml(stage.config), **overrides}

    def of(self, stage: StageSpec, step: str) -> StepPrint:
        key = (stage.name, step)
        if key not in self._memo:
            self._memo[key] = self._compute(stage, step)
        return self._memo[key]

    def _compute(self, stage: StageSpec, step: str) -> StepPrint:
        kind = stage.spec
        config = self.stage_config(stage)
        keys = kind.data_keys() if step == kind.data_step else None
        result = result_config(config, keys)
        files = {}
        inputs = {}
        index = stage.steps.index(step)
        tokenizer = None
        if index == 0:
            for name, path in local_files(config, stage.config.parent, bool(stage.inputs)).items():
                files[name] = self.hashes.digest_any(path) if path.exists() else "missing"
            if kind.standalone(step):
                tokenizer = self.tokenizer_origin(stage)
        else:
            before = stage.steps[index - 1]
            inputs[f"{stage.name}/{before}"] = self.of(stage, before).fingerprint
        if (index == 0) != kind.standalone(stage.steps[0]):  # the first step that reads the upstream outputs
            for name in stage.inputs:
                upstream = self.recipe.stage(name)
                last = upstream.steps[-1]
                inputs[f"{name}/{last}"] = self.of(upstream, last).fingerprint
        if not stage.produces_model:
            # what it evaluates or exports is named by its inputs' variants (eval/<variant>/, publish/<variant>/);
            # a model stage's own variant name (a Hub name) changes nothing it computes
            result["variant names"] = [s.variant or s.name for s in self.recipe.model_inputs(stage)]
        payload = [stage.kind, stage.engine, step, result, files, inputs]
        if tokenizer is not None:
            payload.append(tokenizer)
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
        origin = {"kind": stage.kind, "engine": stage.engine, **({"tokenizer": tokenizer} if tokenizer else {})}
        return StepPrint(digest, result, files, inputs, json.loads(json.dumps(origin, default=str)))

    def tokenizer_origin(self, stage: StageSpec) -> dict:
        """The tokenizer keys of the first stage of ``stage``'s model chain (what a standalone data step uses),
        with the digests of the files a tokenizer is trained on."""
        root = self.recipe.lineage(stage)[0]
        if root is stage:
            return {}
        config = self.stage_config(root)
        keys = {k: config[k] for k in TOKENIZER_KEYS if config.get(k) is not None}
        files = [root.config.parent / f for f in keys.get("tokenizer_train_files", [])]
        keys["files"] = [self.hashes.digest_any(f) if f.exists() else "missing" for f in files]
        return keys

    def save(self) -> None:
        self.hashes.save()


def explain_difference(old: dict, new: StepPrint, input_details=None, stage: str | None = None) -> list[str]:
    """What changed between a recorded step print (a marker or train state) and the current one.

    ``input_details("stage/step")`` may say what changed inside an input; an earlier step of the same
    ``stage`` (its data) is described by its own changes, another stage as "its input 'cap' changed".
    """
    changes = describe_changes(old.get("config", {}), new.config)
    if "origin" in old:  # markers written before it was recorded cannot say; the rest still can
        was, now = old["origin"], new.origin
        changes += describe_changes(
            {k: v for k, v in was.items() if k != "tokenizer"},
            {k: v for k, v in now.items() if k != "tokenizer"},
            "pipeline.yaml: ",
        )
        changes += describe_changes(
            was.get("tokenizer") or {}, now.get("tokenizer") or {}, "tokenizer (first stage's) "
        )
    for key in sorted(set(old.get("files", {})) | set(new.files)):
        if old.get("files", {}).get(key) != new.files.get(key):
            what = (
                "file contents changed"
                if key in old.get("files", {}) and key in new.files
                else "file added"
                if key in new.files
                else "file removed"
            )
            changes.append(f"{key}: {what}")
    for key in sorted(set(old.get("inputs", {})) | set(new.inputs)):
        if old.get("inputs", {}).get(key) == new.inputs.get(key):
            continue
        name = key.partition("/")[0]
        if name != stage:
            changes.append(f"its input {name!r} changed")
            continue
        details = input_details(key) if input_details else []
        inherited = [d for d in details if d.startswith("its input")]
        own = [d for d in details if d not in inherited and d not in changes]  # data keys show once
        changes += ([f"training data changed ({', '.join(own)})"] if own else []) + inherited
        if not details:
            changes.append("training data changed")
    return list(dict.fromkeys(changes)) or ["configuration changed"]
