"""The miniature's model and tokenizer: the recipe's own config chain, shrunk within its family, and its own
tokenizer where it can be had here (:mod:`.miniature` writes them into the miniature recipe)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RecipeError
from ..roots import resolve_path

SHAPE = {"layers": 2, "width": 64, "heads": 4}
REAL_TOKENIZER = "model-tokenizer"  # the recipe's own tokenizer, saved in the miniature's folder
INNER_KEYS = ("n_inner", "intermediate_size")  # MLP width keys (GPTBigCode, Llama-style)


def base_model_config(stage_yaml: dict, stage_dir: Path, recorded: bool) -> tuple[dict, str]:
    """The config.json mapping the recipe's first stage builds or loads, and where it came from."""
    from ..patches import read_config_json

    if stage_yaml.get("base_config"):
        name = stage_yaml["base_config"]
        path = resolve_path(stage_dir, name)
        config = read_config_json(str(path)) if path.exists() else read_config_json(name)
        if config is not None:
            return config, f"base_config {name}"
    model = stage_yaml.get("model_name_or_path")
    if model:
        local = resolve_path(stage_dir, model)
        if local.is_dir() and (config := read_config_json(str(local))) is not None:
            return config, f"{model}/config.json"
        bundled = Path(__file__).resolve().parents[1] / "configs"
        for file in sorted(bundled.glob("*.json")):
            config = json.loads(file.read_text())
            if config.get("_name_or_path") == model:
                return config, f"{model}'s config.json, as bundled in aurora_m/configs/{file.name}"
        if not recorded:
            from huggingface_hub import hf_hub_download

            try:
                return json.loads(Path(hf_hub_download(model, "config.json")).read_text()), f"{model} (Hub)"
            except Exception as err:  # noqa: BLE001 - one line: the model's config is what the rehearsal needs
                raise RecipeError(None, "model_name_or_path", f"{model}: config.json not reachable ({err})") from err
    raise RecipeError(None, "model_name_or_path", f"{model}: its config.json is neither bundled nor local")


def shrink(config: dict) -> dict:
    """The same family (multi-query / grouped heads and positions kept), a few layers of a small width."""
    from ..model_families import family_of

    family = family_of(config)
    out = dict(config)
    heads = config.get(family.heads_key) or SHAPE["heads"]
    out[family.layers_key] = min(config.get(family.layers_key) or SHAPE["layers"], SHAPE["layers"])
    out[family.width_key] = min(config.get(family.width_key) or SHAPE["width"], SHAPE["width"])
    out[family.heads_key] = min(heads, SHAPE["heads"])
    kv = config.get("num_key_value_heads")
    if kv and kv < heads:  # grouped-query attention stays grouped (one K/V head per group of queries)
        out["num_key_value_heads"] = max(1, out[family.heads_key] * kv // heads)
    elif kv:
        out["num_key_value_heads"] = out[family.heads_key]
    if "head_dim" in out:
        out["head_dim"] = out[family.width_key] // out[family.heads_key]
    for key in INNER_KEYS:
        if config.get(key):
            out[key] = 4 * out[family.width_key]
    return out


def real_tokenizer(model: str | None, mini: Path, recorded: bool) -> Path | str:
    """The recipe's own tokenizer saved into the miniature's folder, or why it cannot be had here."""
    if not model:
        return "no model_name_or_path"
    if recorded:
        return "the recorded Hub holds dataset repos only"
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - gated, offline, not found: said in the report, the sample's BPE instead
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}" if str(err) else type(err).__name__
    folder = mini / REAL_TOKENIZER
    tokenizer.save_pretrained(folder)
    return folder
