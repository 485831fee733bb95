"""A recipe's plan on a cluster: per stage, tokens, steps, FLOPs, memory per launch, days, disk, data, eval.

Every figure is computed from the recipe's own YAMLs (parsed as training parses them) and the cluster
given (``--gpus``, ``--gpu``, ``--mfu``); nothing is loaded or downloaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecipeError
from ..recipe import load_recipe
from ..stage_checks import parse_stage
from .accelerators import Accelerator
from .activations import ActivationSetting, cpu_setting, fused_attention_for
from .data_cost import DataCost, data_cost, read_rehearsal
from .eval_cost import eval_cost
from .flops import flops_per_step, recompute_flops_per_token, training_flops_per_token
from .memory import GIB, Launch, fits, memory_per_rank, nanotron_launches, transformers_launches
from .reference import paper_mfu
from .shape import ModelShape
from .stage_model import activation_bytes, checkpointing, stage_shape


@dataclass
class Cluster:
    gpus: int
    device: Accelerator
    mfu: float
    cpu_cores: int | None = None
    global_batch: int | None = None  # a pretrain step's sequences; None: the YAML's (its max_steps, or on these GPUs)

    @property
    def on_gpu(self) -> bool:
        return self.device.name != "cpu"


@dataclass
class LaunchPlan:
    name: str
    memory_gib_per_rank: float
    fits: bool
    checkpointing: bool
    parts_gib: dict
    other_checkpointing_gib: float  # the same launch with activation checkpointing the other way
    best_micro_batch: int | None  # the largest per-device batch that fits and divides the per-rank batch
    best_accumulation: int | None


@dataclass
class StagePlan:
    name: str
    kind: str
    engine: str = ""
    tokens: int | None = None
    steps: int | None = None
    global_batch: int | None = None
    seq_length: int | None = None
    per_device: int | None = None
    accumulation: int | None = None
    params: int | None = None
    flops_per_step: int | None = None
    recompute_flops_per_step: int | None = None
    days: float | None = None
    launches: list[LaunchPlan] = field(default_factory=list)
    checkpoint_bytes: int | None = None
    checkpoints_kept: int | None = None
    checkpoint_disk_bytes: int | None = None
    data: DataCost | None = None
    eval: dict | None = None
    notes: list[str] = field(default_factory=list)


def _arg(parsed, name: str):
    return next((a for a in parsed if hasattr(a, name)), None)


def _global_batch(stage, cluster: Cluster, training_args, seq_length: int, tokens, dp: int) -> tuple[int, str]:
    per_rank = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    if cluster.global_batch and stage.kind == "pretrain":
        batch = cluster.global_batch
        how = "--global-batch"
    elif training_args.max_steps and training_args.max_steps > 0 and tokens:
        batch = tokens // (training_args.max_steps * seq_length)  # the YAML states its steps: its batch is fixed
        how = f"the YAML's max_steps {training_args.max_steps}"
    else:
        batch = per_rank * dp
        how = (
            f"per-device {training_args.per_device_train_batch_size} x accumulation "
            f"{training_args.gradient_accumulation_steps} x {dp} data-parallel ranks (the YAML on these GPUs)"
        )
    if batch % dp:
        near = [n for n in range(max(1, dp - 8), dp + 9) if batch % n == 0]
        raise RecipeError(
            stage.config,
            "per_device_train_batch_size",
            f"the global batch of {batch} sequences cannot be split over {dp} data-parallel ranks "
            f"({cluster.gpus} GPUs){'; GPU counts near it that can: ' + ', '.join(map(str, near)) if near else ''}",
        )
    return batch, f"global batch {batch} sequences: {how}"


def _launch_plan(shape, launch: Launch, cluster: Cluster, seq: int, batch: int, micro: int, ckpt: bool, act: int):
    def setting(on: bool) -> ActivationSetting:
        if not cluster.on_gpu:
            return cpu_setting(shape, act, on)
        return ActivationSetting(
            act_bytes=act, mask_bytes=1, fused_attention=fused_attention_for(shape, True), checkpointing=on
        )

    dp = launch.dp(cluster.gpus)
    per_rank = batch // dp
    memory = memory_per_rank(shape, launch, cluster.gpus, seq, micro, setting(ckpt))
    other = memory_per_rank(shape, launch, cluster.gpus, seq, micro, setting(not ckpt))
    best = next(
        (
            m
            for m in range(per_rank, 0, -1)
            if per_rank % m == 0
            and fits(memory_per_rank(shape, launch, cluster.gpus, seq, m, setting(ckpt)), cluster.device.memory_gib)
        ),
        None,
    )
    return LaunchPlan(
        name=launch.name,
        memory_gib_per_rank=round(memory.total / GIB, 2),
        fits=fits(memory, cluster.device.memory_gib),
        checkpointing=ckpt,
        parts_gib=memory.gib(),
        other_checkpointing_gib=round(other.total / GIB, 2),
        best_micro_batch=best,
        best_accumulation=per_rank // best if best else None,
    )


def _training_plan(plan: StagePlan, stage, parsed, shape: ModelShape, cluster: Cluster, tokens, seq: int) -> None:
    training_args = _arg(parsed, "per_device_train_batch_size")
    parallel = _arg(parsed, "tp")
    tp, pp = (parallel.tp, parallel.pp) if parallel else (1, 1)
    for key, size in (("tp", tp), ("pp", pp)):
        if not isinstance(size, int) or size < 1:  # the engine checks it too, but only where nanotron is installed
            raise RecipeError(stage.config, key, f"expected a positive number of ranks, got {size!r}")
    if cluster.gpus % (tp * pp):
        raise RecipeError(stage.config, "tp", f"tp {tp} x pp {pp} does not divide the cluster's {cluster.gpus} GPUs")
    dp = cluster.gpus // (tp * pp)
    batch, how = _global_batch(stage, cluster, training_args, seq, tokens, dp)
    plan.notes.append(how)
    plan.global_batch, plan.seq_length = batch, seq
    plan.per_device = training_args.per_device_train_batch_size
    plan.accumulation = batch // dp // plan.per_device if (batch // dp) % plan.per_device == 0 else None
    plan.params = shape.params()
    plan.flops_per_step = flops_per_step(shape, seq, batch)
    plan.recompute_flops_per_step = recompute_flops_per_token(shape, seq) * seq * batch
    if tokens is not None:
        plan.tokens = tokens
        plan.steps = tokens // (batch * seq)
        if stage.kind != "pretrain":  # SFT: short rows still fill a step; at least one step per epoch
            epochs = getattr(training_args, "num_train_epochs", 1) or 1
            plan.steps = max(-(-tokens // (batch * seq)), math.ceil(epochs))
        seconds = plan.steps * plan.flops_per_step / (cluster.mfu * cluster.device.peak_tflops * 1e12 * cluster.gpus)
        plan.days = seconds / 86400
    ckpt = checkpointing(training_args)
    act = activation_bytes(shape, training_args)
    if stage.engine == "nanotron":  # the YAML's layout (a launch may give --tp/--pp), then the others that fit
        own = Launch(f"nanotron tp{tp} pp{pp}", "nanotron", tp, pp, getattr(parallel, "zero_stage", 0))
        others = [n for n in nanotron_launches(shape, cluster.gpus) if (n.tp, n.pp) != (tp, pp)]
        launches = [own, *(n for n in others if batch % n.dp(cluster.gpus) == 0)]
    else:
        launches = transformers_launches()
        if stage.kind == "pretrain":  # the nanotron engine trains pretrain stages from the same YAML
            launches += [n for n in nanotron_launches(shape, cluster.gpus) if batch % n.dp(cluster.gpus) == 0]
    micro = plan.per_device
    plan.launches = [_launch_plan(shape, x, cluster, seq, batch, micro, ckpt, act) for x in launches]
    # a checkpoint: the weights as stored, and the optimizer's fp32 master weights and moments (sharded launches)
    sixteen_bit = shape.param_bytes == 2
    plan.checkpoint_bytes = plan.params * (shape.param_bytes + (12 if sixteen_bit else 2 * shape.param_bytes))
    limit = getattr(training_args, "save_total_limit", None)
    save_steps = training_args.save_steps
    every = int(save_steps if save_steps >= 1 else max(1, (plan.steps or 1) * save_steps))
    strategy = str(getattr(training_args.save_strategy, "value", training_args.save_strategy))
    count = 0 if strategy == "no" else (plan.steps or 0) // every if strategy == "steps" else None
    if strategy == "epoch":
        count = int(getattr(training_args, "num_train_epochs", 1))
    plan.checkpoints_kept = min(count, limit) if limit and count is not None else count
    if plan.checkpoints_kept is not None:
        plan.checkpoint_disk_bytes = plan.checkpoints_kept * plan.checkpoint_bytes + plan.params * shape.param_bytes


def _sft_tokens(parsed, bytes_per_token: float) -> int | None:
    """Tokens of one epoch of a stage's SFT sources when they are local files (Hub sets: unknown here)."""
    data_args = _arg(parsed, "sft_sources")
    total = 0
    for source in list(data_args.sft_sources) + list(data_args.helpful_sources or []):
        if not source.get("path") or not Path(source["path"]).is_file():
            return None
        total += Path(source["path"]).stat().st_size
    return int(total / bytes_per_token)


def build_plan(recipe_dir, cluster: Cluster, rehearsal_file: str | None = None) -> tuple[list[StagePlan], list[str]]:
    from .data_cost import DEFAULT_BYTES_PER_TOKEN

    recipe = load_recipe(recipe_dir)
    rehearsal, assumptions = None, []
    if rehearsal_file:
        try:
            rehearsal = read_rehearsal(json.loads(Path(rehearsal_file).read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise RecipeError(rehearsal_file, None, f"not a readable rehearsal.json: {err}") from None
    shapes: dict[str, ModelShape] = {}
    plans = []
    for stage in recipe.stages:
        plan = StagePlan(stage.name, stage.kind, stage.engine)
        if stage.kind == "publish":
            plans.append(plan)
            continue
        parsed = parse_stage(stage.config, stage.kind, validate_only=True, **recipe.upstream(stage))
        inputs = recipe.model_inputs(stage)
        if stage.kind == "eval":
            seq = getattr(_arg(parsed, "seq_length"), "seq_length", 2048)
            plan.eval = eval_cost(_arg(parsed, "suites"), len(inputs), seq)
            plans.append(plan)
            continue
        model_args = _arg(parsed, "config_patches")
        training_args = _arg(parsed, "per_device_train_batch_size")
        upstream = shapes.get(inputs[0].name) if inputs else None
        shape = stage_shape(stage.config, model_args, training_args, upstream)
        shapes[stage.name] = shape
        mix_args = _arg(parsed, "mixture")
        if mix_args is not None:
            tokens, seq = int(mix_args.train_tokens), mix_args.seq_length
            plan.data = data_cost(stage.name, mix_args, shape.vocab, rehearsal)
        else:
            bpt = DEFAULT_BYTES_PER_TOKEN
            epoch = _sft_tokens(parsed, bpt)
            tokens = None if epoch is None else int(epoch * training_args.num_train_epochs)
            seq = training_args.max_length or 1024
            plan.notes.append(
                "tokens: the SFT sources' bytes / 3.26 bytes per token x epochs (padding not counted)"
                if epoch is not None
                else "tokens: the SFT sources are Hub sets whose size is unknown here (a rehearsal measures them)"
            )
        _training_plan(plan, stage, parsed, shape, cluster, tokens, seq)
        plans.append(plan)
    return plans, assumptions


def default_mfu() -> tuple[float, str]:
    return paper_mfu()


__all__ = ["Cluster", "StagePlan", "LaunchPlan", "build_plan", "default_mfu", "training_flops_per_token"]
