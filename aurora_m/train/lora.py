"""LoRA through peft for SFT stages: the adapter config from the recipe's ``use_peft`` / ``lora_*`` keys, and
the merge that gives evaluation and publishing a standalone safetensors model.

Unless the recipe names targets, LoRA adapts every linear layer of the model's family (the family table,
:mod:`aurora_m.model_families`): GPTBigCode's ``c_attn`` (fused q/k/v, multi-query), ``c_proj`` (attention and
MLP output) and ``c_fc`` (MLP input); Llama's ``q_proj`` ... ``down_proj``; a family the table does not know,
peft's ``all-linear``. ``lora_target_modules: all-linear`` (or ``[all-linear]``) asks for that shorthand.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..args import ModelArguments
from ..errors import RecipeError
from ..model_families import ALL_LINEAR, model_facts

logger = logging.getLogger(__name__)


def lora_targets(targets, model_config: dict | None) -> list[str] | str:
    """What LoRA adapts: the recipe's targets (``all-linear`` in either spelling as peft's shorthand), else every
    linear layer of the model's family."""
    if targets in (ALL_LINEAR, [ALL_LINEAR]):
        return ALL_LINEAR
    if targets:
        return list(targets)
    family = model_facts(model_config or {}).family
    return list(family.linear_layers) or ALL_LINEAR


def lora_config(model_args: ModelArguments, config_file="<stage config>", model_config: dict | None = None):
    """trl's LoraConfig from the model keys (None without ``use_peft``); ``model_config``: the model's config
    mapping, whose family gives the default targets."""
    if not model_args.use_peft:
        return None
    from trl import get_peft_config

    if not model_args.model_name_or_path:
        raise RecipeError(
            config_file,
            "use_peft",
            "LoRA adapts trained weights: the stage needs an input model (pipeline.yaml inputs) or model_name_or_path",
        )
    config = get_peft_config(model_args)
    config.target_modules = lora_targets(model_args.lora_target_modules, model_config)
    return config


def is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merge_adapter(adapter_dir: str | Path, base: str | Path, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Write ``out_dir``: the base model with the adapter merged in (safetensors), plus the tokenizer.

    Reloads the base from disk rather than merging the training copy, so it works the same whatever sharded
    it during training (FSDP, ZeRO-3); on one process it costs one more load of the base (15.5B in bf16: 31 GB
    of host memory).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), use_safetensors=True, dtype=dtype or "auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with torch.no_grad():
        merged.save_pretrained(str(out_dir), safe_serialization=True)
    for name in Path(adapter_dir).iterdir():  # the tokenizer the trainer saved beside the adapter
        if name.is_file() and (name.name.startswith(("tokenizer", "special_tokens")) or name.suffix == ".jinja"):
            shutil.copy2(name, Path(out_dir) / name.name)
    logger.info("merged the LoRA adapter %s into %s", adapter_dir, out_dir)
    return Path(out_dir)
