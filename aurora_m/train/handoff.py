"""How a pretraining stage starts from the stage before it (``init_from``).

- ``weights``: the upstream model's weights, a fresh optimizer, and this stage's own schedule from step 0
  (its warmup re-warms the learning rate).
- ``full_state``: the weights plus the upstream's optimizer state (AdamW moments and step counts) from its
  final checkpoint, and the schedule's step count carried on: this stage's schedule is evaluated at
  ``upstream_steps + s`` over ``upstream_steps + max_steps`` steps, so warmup is not repeated and a cosine or
  warmup-stable-decay schedule continues where the upstream left it. The learning rate, betas and weight
  decay are this stage's keys (the upstream's are replaced after loading), so a YAML says what it trains with.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from ..args import INIT_FROM
from ..errors import RecipeError
from ..io import read_json_or_none
from ..layout import TRAINER_STATE, StageDir
from .checkpoints import is_complete

logger = logging.getLogger(__name__)
OPTIMIZER_FILE = "optimizer.pt"
CARRY_ON = "CarryOn"  # the callback that loads the upstream optimizer, and records what it carried on from


@dataclass(frozen=True)
class UpstreamState:
    checkpoint: Path  # the upstream's checkpoint at its last step
    step: int  # the upstream's last optimizer step: where the schedule carries on from


def recorded_upstream(checkpoint: Path | None) -> UpstreamState | None:
    """What a resumed ``full_state`` run carried on from, as its own checkpoint recorded it: a resume needs
    neither the upstream's checkpoint (deleted to free disk, say) nor its step count to be unchanged."""
    if checkpoint is None:
        return None
    state = (read_json_or_none(Path(checkpoint) / TRAINER_STATE) or {}).get("stateful_callbacks") or {}
    saved = (state.get(CARRY_ON) or {}).get("args")
    return UpstreamState(Path(saved["checkpoint"]), int(saved["step"])) if saved else None


def upstream_state(
    model_args, config_file: str | Path = "<stage config>", resume: Path | None = None
) -> UpstreamState | None:
    """The checkpoint a ``full_state`` stage carries on from: as recorded in the checkpoint it resumes from,
    else ``init_state_from``, else the newest complete checkpoint in the stage folder of
    ``model_name_or_path``; it must be that stage's last step."""
    if model_args.init_from not in INIT_FROM:
        raise RecipeError(
            config_file, "init_from", f"expected one of {', '.join(INIT_FROM)}, got {model_args.init_from!r}"
        )
    if model_args.init_from == "weights":
        return None
    if (recorded := recorded_upstream(resume)) is not None:
        return recorded
    if model_args.init_state_from:
        checkpoint = Path(model_args.init_state_from)
        key = "init_state_from"
        if not is_complete(checkpoint):
            raise RecipeError(
                config_file,
                key,
                f"{checkpoint} is not a complete checkpoint folder (no {TRAINER_STATE} naming its step)",
            )
    else:
        key = "init_from"
        model = Path(model_args.model_name_or_path or "")
        if not model_args.model_name_or_path or not model.is_dir():
            raise RecipeError(
                config_file,
                key,
                "full_state carries on an upstream stage's optimizer: it needs "
                "model_name_or_path to be that stage's local model folder (or "
                f"init_state_from), got {model_args.model_name_or_path!r}",
            )
        complete = [c for c in StageDir(model.parent).checkpoints() if is_complete(c)]
        if not complete:
            raise RecipeError(
                config_file,
                key,
                f"full_state needs the upstream's last checkpoint, and "
                f"{model.parent} holds no complete checkpoint-N (did the upstream "
                "stage run with save_strategy: no?)",
            )
        checkpoint = complete[-1]
    state = read_json_or_none(checkpoint / TRAINER_STATE) or {}
    step, last = int(state.get("global_step", 0)), int(state.get("max_steps", 0))
    if step != last:
        raise RecipeError(
            config_file,
            key,
            f"{checkpoint.name} is step {step} of {last}: full_state needs the "
            "optimizer at the upstream's last step, which its saves must include",
        )
    if not any(p.name.startswith("optimizer") for p in checkpoint.iterdir()):
        raise RecipeError(config_file, key, f"{checkpoint} holds no optimizer state (save_only_model?)")
    logger.info("init_from full_state: optimizer state of %s, schedule carries on from step %d", checkpoint, step)
    return UpstreamState(checkpoint, step)


def _shifted(lr_lambda, offset: int, step: int) -> float:
    return lr_lambda(offset + step)


def carry_on_schedule(scheduler, offset: int):
    """The same schedule read ``offset`` steps later (a partial, so the scheduler still saves and loads)."""
    from torch.optim.lr_scheduler import LambdaLR

    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not isinstance(scheduler, LambdaLR) or not lambdas:
        raise RecipeError(
            None,
            "lr_scheduler_type",
            f"{type(scheduler).__name__} is not a step-based schedule: "
            "init_from: full_state cannot carry its position on",
        )
    return LambdaLR(scheduler.optimizer, [functools.partial(_shifted, f, offset) for f in lambdas])


def load_upstream_optimizer(trainer, upstream: UpstreamState) -> None:
    """The upstream's AdamW moments into this stage's optimizer; this stage's hyperparameters kept."""
    import torch

    optimizer = trainer.optimizer
    keep = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    if trainer.is_deepspeed_enabled:
        raise RecipeError(
            None,
            "init_from",
            "full_state under DeepSpeed is not supported (DeepSpeed keeps the "
            "optimizer in its own checkpoint format): use the fsdp2 config, or "
            "init_from: weights",
        )
    if trainer.is_fsdp_enabled:
        from accelerate.utils import load_fsdp_optimizer
        from transformers.distributed.fsdp import get_fsdp_ckpt_kwargs

        load_fsdp_optimizer(
            trainer.accelerator.state.fsdp_plugin,
            trainer.accelerator,
            optimizer,
            trainer.model,
            str(upstream.checkpoint),
            **get_fsdp_ckpt_kwargs(),
        )
    else:
        where = upstream.checkpoint / OPTIMIZER_FILE
        try:
            state = torch.load(where, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is damaged
            raise RecipeError(
                where,
                None,
                f"is not a readable optimizer state (truncated or corrupt: "
                f"{type(err).__name__}); restore it or use init_from: weights",
            ) from None
        check_fits(state, optimizer, where)
        optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, keep):
        group.update(own)


def check_fits(state: dict, optimizer, where: Path) -> None:
    """Every saved moment has its parameter's shape (fused AdamW does not check: it trains on garbage or
    crashes), so a checkpoint of another model size is refused by name."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise RecipeError(
            where,
            None,
            f"holds {len(groups or [])} parameter groups, this stage's optimizer "
            f"{len(optimizer.param_groups)}: not this model's optimizer state",
        )
    saved = state.get("state") or {}
    for saved_group, group in zip(groups, optimizer.param_groups):
        if len(saved_group.get("params", [])) != len(group["params"]):
            raise RecipeError(
                where,
                None,
                f"a parameter group holds {len(saved_group.get('params', []))} "
                f"parameters, this model's {len(group['params'])}: another model",
            )
        for index, param in zip(saved_group["params"], group["params"]):
            for name, value in (saved.get(index) or {}).items():
                if hasattr(value, "shape") and value.dim() > 0 and tuple(value.shape) != tuple(param.shape):
                    raise RecipeError(
                        where,
                        None,
                        f"{name} of parameter {index} has shape {tuple(value.shape)}, "
                        f"the model's parameter {tuple(param.shape)}: the optimizer "
                        "state of another model size",
                    )
