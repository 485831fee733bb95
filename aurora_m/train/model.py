"""Build or load the causal LM of a stage (any transformers family; GPTBigCode the paper's), with the recipe's
patches applied and its config's vocabulary checked against the tokenizer."""

from __future__ import annotations

from pathlib import Path

from ..args import ModelArguments
from ..errors import RecipeError
from ..hub_errors import explain_hub_errors
from ..patches import apply_config_patches, apply_model_patches, check_config_fits_tokenizer, load_base_config


def load_model(model_args: ModelArguments, tokenizer, config_file: str | Path = "<stage config>"):
    """Continue from weights (safetensors only, no remote code), or build from a patched config."""
    from transformers import AutoModelForCausalLM

    if model_args.model_name_or_path:
        # load straight into the dtype a patch asks for (15.5B parameters in float32 would need 62 GB)
        dtypes = [spec.partition(":")[2] for spec in model_args.config_patches if spec.startswith("dtype:")]
        with explain_hub_errors(config_file, "model_name_or_path", model_args.model_name_or_path, repo_type="model"):
            model = AutoModelForCausalLM.from_pretrained(
                model_args.model_name_or_path,
                revision=model_args.model_revision,
                use_safetensors=True,
                dtype=dtypes[-1] if dtypes else model_args.dtype,
                attn_implementation=model_args.attn_implementation,
            )
        _patch(config_file, apply_model_patches, model, model_args.config_patches)
    else:
        import torch

        config = _patch(
            config_file, apply_config_patches, load_base_config(model_args.base_config), model_args.config_patches,
            tokenizer=tokenizer,
        )  # fmt: skip
        check_config_fits_tokenizer(config.to_dict(), tokenizer, config_file, model_args.base_config)
        torch.manual_seed(model_args.model_seed)
        model = AutoModelForCausalLM.from_config(config)
    if len(tokenizer) > model.config.vocab_size:
        raise RecipeError(
            config_file,
            "tokenizer_name_or_path",
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {model.config.vocab_size}",
        )
    return model


def _patch(config_file, apply, target, specs, **kwargs):
    try:
        return apply(target, specs, **kwargs)
    except ValueError as err:  # validation refuses these first; a script run straight still gets one line
        raise RecipeError(config_file, "config_patches", str(err)) from None


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
