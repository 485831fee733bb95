"""The training keys of a stage (named in the kinds table): how it continues its input, LoRA, forgetting probes."""

from __future__ import annotations

import math

from ..errors import RecipeError
from ..overrides import check_choice, check_range, number


def check_init_from(stage) -> None:
    from ..args import INIT_FROM

    config = stage.config
    if "init_from" not in config:
        return
    if config["init_from"] not in INIT_FROM:
        raise RecipeError(
            *stage.origin("init_from"), f"expected one of {', '.join(INIT_FROM)}, got {config['init_from']!r}"
        )
    if config["init_from"] == "full_state" and not (
        stage.has_model_input or config.get("model_name_or_path") or config.get("init_state_from")
    ):
        raise RecipeError(
            *stage.origin("init_from"),
            "full_state carries on an upstream stage's optimizer: give the stage an input "
            "in pipeline.yaml (or model_name_or_path of a local stage's model)",
        )


def check_lora_keys(stage) -> None:
    from .lora import GPT_BIGCODE_LINEAR

    file, config = stage.file, stage.config
    if not config.get("use_peft"):
        return
    rank = number(config.get("lora_r", 1))
    if not (rank >= 1 and float(rank).is_integer()):
        raise RecipeError(file, "lora_r", f"expected a positive integer rank, got {config['lora_r']!r}")
    if "lora_dropout" in config and not 0 <= number(config["lora_dropout"]) < 1:
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


def check_forgetting_probes(stage) -> None:
    """The probes a pretraining stage watches for forgetting (the registry the evaluation suites add to)."""
    from .monitor import PROBES

    check_range(stage.file, stage.config, "forgetting_threshold", 0, math.inf, low_open=True, high_open=True)
    if stage.config.get("forgetting_probes"):
        check_choice(stage.file, stage.config, "forgetting_probes", list(PROBES))
