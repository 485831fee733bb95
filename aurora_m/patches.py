"""Named, composable patches over a GPTBigCode config (and, where it matters, its weights).

A patch is written in a recipe as ``name`` or ``name:value`` (``aurora_m``, ``tiny``,
``dtype:bfloat16``, ``attn:eager``) and patches apply left to right. Each patch changes a copy of
the config; a patch that changes the shape of a trained tensor also knows how to change the
weights (``aurora_m`` keeps the first 2048 rows of the learned position matrix), so the same list
serves a model built from a config and a model loaded from a checkpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import RecipeError

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


def _aurora_m_config(cfg, value):
    n = int(value) if value else AURORA_M_CONTEXT
    if n > cfg.n_positions:
        raise ValueError(f"cannot trim n_positions {cfg.n_positions} up to {n}")
    cfg.n_positions = n
    cfg.pad_token_id = 0  # the released Aurora-M config pads with <|endoftext|> (id 0)


def _aurora_m_weights(model, value):
    import torch

    n = int(value) if value else AURORA_M_CONTEXT
    transformer = model.transformer
    old = transformer.wpe.weight
    if old.shape[0] < n:
        raise ValueError(f"position matrix has {old.shape[0]} rows, cannot keep {n}")
    wpe = torch.nn.Embedding(n, old.shape[1], dtype=old.dtype, device=old.device)
    with torch.no_grad():
        wpe.weight.copy_(old[:n])
    transformer.wpe = wpe
    # the causal-mask buffer is sized by n_positions too; keep it consistent with the new matrix
    if hasattr(transformer, "bias") and transformer.bias.shape[0] > n:
        transformer.bias = transformer.bias[:n, :n].clone()


def _tiny_config(cfg, value):
    for key, val in TINY_SHAPE.items():
        setattr(cfg, key, val)
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")


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
        ),
        Patch(
            "tiny",
            "shrink to 2 layers x 128 wide, keeping multi-query attention and learned positions",
            _tiny_config,
            from_config_only=True,
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
    """A GPTBigCode config from a bundled name (``starcoderplus``) or a config.json path."""
    from transformers import GPTBigCodeConfig

    data = read_config_json(name_or_path)
    if data is None:
        raise ValueError(f"{name_or_path}: no readable config.json (a bundled name, a config.json or a model folder)")
    if data.get("model_type") != "gpt_bigcode":
        raise ValueError(f"{name_or_path}: model_type is {data.get('model_type')!r}, expected 'gpt_bigcode'")
    return GPTBigCodeConfig.from_dict(data)


def apply_config_patches(config, specs: list[str]):
    """A patched copy of ``config``; the original is left as it was."""
    config = copy.deepcopy(config)
    for spec in specs:
        patch, value = parse_patch(spec)
        patch.config(config, value)
    return config


def apply_model_patches(model, specs: list[str]):
    """Patch a model that already holds weights (for example StarCoderPlus from the Hub)."""
    for spec in specs:
        patch, value = parse_patch(spec)
        if patch.from_config_only:
            raise ValueError(
                f"patch {patch.name!r} changes layer shapes: it only applies to a model built from a config"
            )
        patch.config(model.config, value)
        if patch.weights is not None:
            patch.weights(model, value)
    return model
