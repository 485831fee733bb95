"""Named, composable patches over a base model's config (and, where it matters, its weights).

A patch is written in a recipe as ``name`` or ``name:value`` (``aurora_m``, ``tiny``, ``tokenizer_vocab``,
``dtype:bfloat16``, ``attn:eager``) and patches apply left to right. Each patch changes a copy of
the config; a patch that changes the shape of a trained tensor also knows how to change the
weights (``aurora_m`` keeps the first 2048 rows of the learned position matrix), so the same list
serves a model built from a config and a model loaded from a checkpoint. A patch that only makes sense for
some models says which (``requires``: a learned position matrix, or a model type): validation refuses it on
any other, reading the family table (:mod:`aurora_m.model_families`), before any data is built.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import RecipeError
from .model_families import FAMILIES, LEARNED, ModelFacts, family_of, model_facts, tokenizer_mismatch

AURORA_M_CONTEXT = 2048  # Aurora-M trained at 2k context (no FlashAttention on LUMI's MI250X)
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
# Shapes of the tiny twin: 2 layers, width 128, 4 query heads sharing one K/V head (multi-query is
# kept), learned positions kept. ~1M parameters with a 4k vocabulary: a CPU step takes milliseconds.
TINY_SHAPE = {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_inner": 512}


@dataclass(frozen=True)
class Patch:
    name: str
    help: str
    config: Callable  # (config, value) -> None, edits the copy in place
    weights: Callable | None = None  # (model, value) -> None, for patches that change tensor shapes
    needs_value: bool = False
    choices: tuple[str, ...] = ()  # allowed values, when the value is one of a few names
    from_config_only: bool = False  # shapes that make no sense for trained weights
    requires: str = ""  # LEARNED (a position matrix to trim) or a model_type; "" for any causal LM
    tokenizer: Callable | None = None  # (config, value, tokenizer) -> None, for patches that read the tokenizer


def _mapping(cfg) -> dict:
    """A transformers config, or the namespace validation patches, as a mapping of its keys."""
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))


def _keep(value) -> int:
    return int(value) if value else AURORA_M_CONTEXT


def _aurora_m_config(cfg, value):
    n, key = _keep(value), family_of(_mapping(cfg)).positions_key
    if n > getattr(cfg, key):
        raise ValueError(
            f"patch 'aurora_m' keeps {n} positions, but the config has {getattr(cfg, key)} ({key}): "
            f"keep at most that many (aurora_m:{getattr(cfg, key)})"
        )
    setattr(cfg, key, n)
    cfg.pad_token_id = 0  # the released Aurora-M config pads with <|endoftext|> (id 0)


def _aurora_m_weights(model, value):
    import torch

    n = _keep(value)
    owner_path, _, name = family_of(model.config.to_dict()).position_matrix.rpartition(".")
    transformer = model.get_submodule(owner_path)
    old = getattr(transformer, name).weight
    if old.shape[0] < n:
        raise ValueError(f"position matrix has {old.shape[0]} rows, cannot keep {n}")
    wpe = torch.nn.Embedding(n, old.shape[1], dtype=old.dtype, device=old.device)
    with torch.no_grad():
        wpe.weight.copy_(old[:n])
    setattr(transformer, name, wpe)
    # the causal-mask buffer is sized by n_positions too; keep it consistent with the new matrix
    if hasattr(transformer, "bias") and transformer.bias.shape[0] > n:
        transformer.bias = transformer.bias[:n, :n].clone()


def _tiny_config(cfg, value):
    for key, val in TINY_SHAPE.items():
        setattr(cfg, key, val)
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")


def _tokenizer_vocab(cfg, value, tokenizer):
    # a config written for another tokenizer (StarCoderPlus's shape, a locally trained tokenizer): take its own
    cfg.vocab_size = len(tokenizer)
    cfg.bos_token_id = cfg.eos_token_id = tokenizer.eos_token_id
    cfg.pad_token_id = tokenizer.pad_token_id


def _dtype_config(cfg, value):
    if value not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    cfg.dtype = value


def _dtype_weights(model, value):
    import torch

    model.to(getattr(torch, value))


def _attn_config(cfg, value):
    if value not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {value!r}")
    cfg._attn_implementation = value


def _attn_weights(model, value):
    model.set_attn_implementation(value)


PATCHES = {
    p.name: p
    for p in (
        Patch(
            "aurora_m",
            "trim n_positions 8192 -> 2048 (keep the first rows of wpe); pad with id 0",
            _aurora_m_config,
            _aurora_m_weights,
            requires=LEARNED,
        ),
        Patch(
            "tiny",
            "shrink to 2 layers x 128 wide, keeping multi-query attention and learned positions",
            _tiny_config,
            from_config_only=True,
            requires="gpt_bigcode",
        ),
        Patch(
            "tokenizer_vocab",
            "vocab_size and bos/eos/pad ids from the tokenizer (a config written for another tokenizer)",
            lambda cfg, value: None,  # needs the tokenizer: applied where the model is built
            from_config_only=True,
            tokenizer=_tokenizer_vocab,
        ),
        Patch(
            "dtype",
            "parameter dtype: float32, bfloat16 or float16",
            _dtype_config,
            _dtype_weights,
            needs_value=True,
            choices=DTYPES,
        ),
        Patch(
            "attn",
            "attention implementation: sdpa, eager, flash_attention_2/3",
            _attn_config,
            _attn_weights,
            needs_value=True,
            choices=ATTENTION,
        ),
    )
}


def parse_patch(spec: str) -> tuple[Patch, str | None]:
    """``"dtype:bfloat16"`` -> (the dtype patch, "bfloat16"). Raises ValueError on unknown names."""
    name, _, value = spec.partition(":")
    if name not in PATCHES:
        raise ValueError(f"unknown patch {name!r} (known: {', '.join(PATCHES)})")
    patch = PATCHES[name]
    if patch.needs_value and not value:
        raise ValueError(f"patch {name!r} needs a value, written '{name}:VALUE' ({patch.help})")
    if value and patch.choices and value not in patch.choices:
        raise ValueError(f"patch {name!r}: {value!r} is not one of {', '.join(patch.choices)} ({patch.help})")
    if value and name == "aurora_m" and not (value.isdigit() and int(value) > 0):
        raise ValueError(f"patch 'aurora_m' takes a positive number of positions to keep, got {value!r}")
    return patch, value or None


def check_patches(specs: list[str], file: str | Path, key: str = "config_patches") -> None:
    for spec in specs:
        try:
            parse_patch(spec)
        except ValueError as err:
            raise RecipeError(file, key, str(err)) from None


def read_config_json(name_or_path: str) -> dict | None:
    """The config mapping of a bundled name (``starcoderplus``), a config.json or a model folder; None if there
    is none here (a Hub id, say). Light: no transformers import, so validation can read ``n_positions``."""
    bundled = resources.files("aurora_m") / "configs" / f"{name_or_path}.json"
    if bundled.is_file():
        return json.loads(bundled.read_text())
    path = Path(name_or_path)
    path = path / "config.json" if path.is_dir() else path
    if path.is_file() and path.suffix == ".json":
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return None


def load_base_config(name_or_path: str):
    """The transformers config of a bundled name (``starcoderplus``) or a config.json path, any causal LM's."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    data = read_config_json(name_or_path)
    if data is None:
        raise ValueError(f"{name_or_path}: no readable config.json (a bundled name, a config.json or a model folder)")
    if data.get("model_type") not in CONFIG_MAPPING:
        raise ValueError(
            f"{name_or_path}: model_type {data.get('model_type')!r} is not one transformers knows "
            "(e.g. gpt_bigcode, llama, qwen2, mistral, gpt2, starcoder2)"
        )
    return CONFIG_MAPPING[data["model_type"]].from_dict(data)


def patch_problem(patch: Patch, facts: ModelFacts) -> str | None:
    """Why ``patch`` does not apply to a model with these facts (None: it does)."""
    if patch.requires == LEARNED and not facts.family.learned_positions:
        learned = ", ".join(f.name for f in FAMILIES.values() if f.learned_positions)
        return (
            f"patch {patch.name!r} trims a learned position matrix ({learned}); a {facts.family.name} model "
            f"({facts.model_type}) has {facts.family.positions or 'other'} positions: leave it out and set "
            f"{facts.family.positions_key} in its config.json"
        )
    if patch.requires and patch.requires != LEARNED and facts.model_type != patch.requires:
        return (
            f"patch {patch.name!r} reshapes a {FAMILIES[patch.requires].name} config ({patch.requires}); this "
            f"model is {facts.model_type}: write the shape in its config.json instead"
        )
    return None


def patched_config(data: dict, specs: list[str], *, from_weights: bool = False) -> dict:
    """A config mapping with ``specs`` applied, as validation sees it (no transformers, no tokenizer): the
    same patch functions, on a namespace. Raises ValueError saying why a patch does not apply."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(**copy.deepcopy(data))
    for spec in specs:
        patch, value = parse_patch(spec)
        if problem := patch_problem(patch, model_facts(vars(cfg))):
            raise ValueError(problem)
        if from_weights and patch.from_config_only:
            raise ValueError(
                f"patch {patch.name!r} reshapes layers, so it only applies to a model built from base_config"
            )
        patch.config(cfg, value)
    return vars(cfg)


def apply_config_patches(config, specs: list[str], tokenizer=None):
    """A patched copy of ``config``; the original is left as it was. ``tokenizer``: what ``tokenizer_vocab`` reads."""
    config = copy.deepcopy(config)
    for spec in specs:
        patch, value = parse_patch(spec)
        if problem := patch_problem(patch, model_facts(config.to_dict())):
            raise ValueError(problem)
        patch.config(config, value)
        if patch.tokenizer is not None:
            if tokenizer is None:
                raise ValueError(f"patch {patch.name!r} reads the tokenizer: apply it where the model is built")
            patch.tokenizer(config, value, tokenizer)
    return config


def apply_model_patches(model, specs: list[str]):
    """Patch a model that already holds weights (for example StarCoderPlus from the Hub)."""
    for spec in specs:
        patch, value = parse_patch(spec)
        if patch.from_config_only:
            raise ValueError(
                f"patch {patch.name!r} changes layer shapes: it only applies to a model built from a config"
            )
        if problem := patch_problem(patch, model_facts(model.config.to_dict())):
            raise ValueError(problem)
        patch.config(model.config, value)
        if patch.weights is not None:
            patch.weights(model, value)
    return model


def check_config_fits_tokenizer(config: dict, tokenizer, config_file, base_config) -> None:
    """A config's vocabulary and special ids are kept as written: one that does not fit the tokenizer is refused
    in one line (the ``tokenizer_vocab`` patch takes the tokenizer's instead, as the tiny twin's StarCoderPlus
    shape does). The data step calls it as soon as the tokenizer is there, training again on the built config."""
    problem = tokenizer_mismatch(model_facts(config), len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)
    if problem:
        raise RecipeError(
            config_file,
            "base_config",
            f"{base_config}: {problem}: write the tokenizer's in the config, or add tokenizer_vocab to "
            "config_patches to take them from the tokenizer",
        )


def check_base_config_fits_tokenizer(model_args, tokenizer, config_file) -> None:
    """The data step's early check of a model built from ``base_config`` (before any document is read)."""
    names = [spec.partition(":")[0] for spec in model_args.config_patches]
    if model_args.model_name_or_path or not model_args.base_config or "tokenizer_vocab" in names:
        return
    data = read_config_json(model_args.base_config)
    if data is not None:
        check_config_fits_tokenizer(data, tokenizer, config_file, model_args.base_config)
