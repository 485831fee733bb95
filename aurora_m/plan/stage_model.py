"""A stage's model shape and precision, read from its parsed arguments without loading weights.

The architecture comes from, in order: the stage's ``model_name_or_path`` when it is a local folder or
config.json; a Hub id whose config ships with aurora-m (``aurora_m/configs/*.json``, matched by its
``_name_or_path``: ``bigcode/starcoderplus``); ``base_config`` (a bundled name or a config.json); the
stage it continues from (CAT from CAP). Then the recipe's config patches, applied by the same functions
training applies (``aurora_m.patches``), and a trained tokenizer's vocabulary size.
"""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace

from ..errors import RecipeError
from ..model_families import model_facts
from ..patches import parse_patch, read_config_json
from .shape import ModelShape, shape_from_config

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def bundled_config_for(hub_id: str) -> dict | None:
    for path in (resources.files("aurora_m") / "configs").iterdir():
        if path.name.endswith(".json"):
            data = json.loads(path.read_text())
            if data.get("_name_or_path") == hub_id:
                return data
    return None


def _patched(config: dict, specs: list[str]) -> tuple[dict, str | None, str | None]:
    """The config after the recipe's patches, with the dtype and attention they set (None when unset)."""
    cfg = SimpleNamespace(**config)
    for spec in specs:
        patch, value = parse_patch(spec)
        patch.config(cfg, value)
    out = vars(cfg)
    return out, out.get("dtype"), out.get("_attn_implementation")


def stage_shape(stage_file, model_args, training_args, upstream: ModelShape | None) -> ModelShape:
    """The shape of the model a stage trains (or evaluates), with its parameter dtype and attention kernel."""
    source = model_args.model_name_or_path
    config = None
    if source:
        config = read_config_json(source) or bundled_config_for(source)
        if config is None and upstream is None:
            raise RecipeError(
                stage_file,
                "model_name_or_path",
                f"{source}: no config.json here and none bundled with aurora-m: plan from a local copy "
                f"(the model folder or its config.json)",
            )
    elif model_args.base_config and upstream is None:
        config = read_config_json(model_args.base_config)
        if config is None:
            raise RecipeError(stage_file, "base_config", f"{model_args.base_config}: no readable config.json")
    if config is None:
        dtype = _dtype_of(model_args, None)
        attn = model_args.attn_implementation or upstream.attn
        return ModelShape(
            **{**vars(upstream), "param_bytes": DTYPE_BYTES.get(dtype, upstream.param_bytes), "attn": attn}
        )
    family = model_facts(config).family
    if family.model_type != "gpt_bigcode":  # the formulas count GPTBigCode's modules (shape.py, flops.py)
        raise RecipeError(
            stage_file,
            "model_name_or_path" if source else "base_config",
            f"a {family.name} model ({family.model_type}): plan counts the FLOPs, parameters and activations of "
            "GPTBigCode (multi-query attention, learned positions, GELU MLP) only; it trains on the transformers "
            "engine all the same",
        )
    config, dtype, attn = _patched(config, list(model_args.config_patches))
    trained_tokenizer = model_args.base_config and not model_args.tokenizer_name_or_path and not source
    vocab = model_args.tokenizer_vocab_size if trained_tokenizer and model_args.tokenizer_train_files else None
    dtype = _dtype_of(model_args, dtype)
    attn = attn or model_args.attn_implementation or "sdpa"
    return shape_from_config(config, vocab=vocab, param_bytes=DTYPE_BYTES.get(dtype, 4), attn=attn)


def _dtype_of(model_args, patched: str | None) -> str | None:
    if patched:
        return patched
    given = getattr(model_args, "dtype", None)
    return given if given in DTYPE_BYTES else None


def activation_bytes(shape: ModelShape, training_args) -> int:
    """2 under bf16/fp16 (autocast) or with 16-bit parameters, else 4."""
    if getattr(training_args, "bf16", False) or getattr(training_args, "fp16", False):
        return 2
    return shape.param_bytes


def checkpointing(training_args) -> bool:
    return bool(getattr(training_args, "activation_checkpointing", False) or training_args.gradient_checkpointing)
