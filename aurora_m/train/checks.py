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
    """LoRA's rank, dropout and targets: targets must be linear layers of the model's family (read from its
    config.json or its input stage's), or ``all-linear``; a family validation cannot read is left to peft."""
    from ..model_families import ALL_LINEAR, model_facts

    file, config = stage.file, stage.config
    if not config.get("use_peft"):
        return
    rank = number(config.get("lora_r", 1))
    if not (rank >= 1 and float(rank).is_integer()):
        raise RecipeError(file, "lora_r", f"expected a positive integer rank, got {config['lora_r']!r}")
    if "lora_dropout" in config and not 0 <= number(config["lora_dropout"]) < 1:
        raise RecipeError(file, "lora_dropout", f"expected 0 <= x < 1, got {config['lora_dropout']!r}")
    targets = config.get("lora_target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    if ALL_LINEAR in targets and len(targets) > 1:
        raise RecipeError(file, "lora_target_modules", f"{ALL_LINEAR} stands alone: it already names every layer")
    family = model_facts(stage.model).family if stage.model is not None else None
    if family is None or not family.linear_layers or targets == [ALL_LINEAR]:
        return
    unknown = [t for t in targets if t not in family.linear_layers]
    if unknown:
        raise RecipeError(
            file,
            "lora_target_modules",
            f"{', '.join(map(str, unknown))}: not a linear layer of a {family.name} model (expected some of "
            f"{', '.join(family.linear_layers)}, or {ALL_LINEAR})",
        )


def check_forgetting_probes(stage) -> None:
    """The probes a pretraining stage watches for forgetting (the registry the evaluation suites add to)."""
    from .monitor import PROBES

    check_range(stage.file, stage.config, "forgetting_threshold", 0, math.inf, low_open=True, high_open=True)
    if stage.config.get("forgetting_probes"):
        check_choice(stage.file, stage.config, "forgetting_probes", list(PROBES))
