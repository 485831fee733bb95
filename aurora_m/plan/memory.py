"""Memory per rank of one training launch: weights, gradients, optimizer states, activations, buffers.

Bytes per parameter, P parameters, N data-parallel ranks (the launch's own accounting; ZeRO's paper,
Rajbhandari et al. 2020, for the DeepSpeed rows):

    ddp      the Trainer's AdamW on the parameters as stored (p bytes: 2 for a dtype:bfloat16 model, else 4):
             weights p, gradients p, two moments 2p, DDP's gradient buckets p (a second copy of the gradients)
    zero1    DeepSpeed bf16: weights 2, gradients 2, fp32 master + moments 12 / N
    zero2    weights 2, (gradients 2 + optimizer 12) / N
    zero3    (2 + 2 + 12) / N; buffers: two gathered layers (the one computing and the prefetched one)
    fsdp2    accelerate's FSDP2 under bf16 mixed precision keeps fp32 shards: (4 + 4 + 8) / N; buffers: the
             root module's gathered embeddings and two gathered blocks, in bf16, with their gradients
    nanotron tp x pp x dp: the first pipeline stage's share of the layers and the embeddings, over tp:
             bf16 weights 2, bf16 gradients 2 + fp32 accumulator 4 (accumulate_grad_in_fp32), fp32 master
             + moments 12 (over dp with zero_stage 1); its 1F1B schedule keeps pp micro-batches in flight
             on the first stage, each of its n_layer / pp layers: n_layer layers of one micro-batch in all

Activations come from :mod:`.activations`; at the peak a checkpointed launch also holds the layer backward
recomputes, and every launch holds the loss's logits gradient (fp32 and 16-bit, V per token). A launch
fits when all of it is at most ``USABLE`` of the device's memory (the rest: CUDA/ROCm context, NCCL
buffers, allocator fragmentation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .activations import ActivationSetting, recompute_bytes, saved_bytes
from .shape import ModelShape

USABLE = 0.9
GIB = 2**30


@dataclass(frozen=True)
class Launch:
    name: str
    kind: str  # ddp | zero1 | zero2 | zero3 | fsdp2 | nanotron
    tp: int = 1
    pp: int = 1
    zero_stage: int = 0  # nanotron's

    def dp(self, gpus: int) -> int:
        return gpus // (self.tp * self.pp)


@dataclass(frozen=True)
class Memory:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    def gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 3) for k, v in {**asdict(self), "total": self.total}.items()}


def transformers_launches() -> list[Launch]:
    """The launches of ``recipes/accelerate_configs`` (fsdp1: the same sharding as fsdp2, on older torch)."""
    return [
        Launch("ddp", "ddp"),
        Launch("zero1", "zero1"),
        Launch("zero2", "zero2"),
        Launch("zero3", "zero3"),
        Launch("fsdp2", "fsdp2"),
    ]


def nanotron_launches(shape: ModelShape, gpus: int) -> list[Launch]:
    """TP x PP layouts nanotron can run on ``gpus`` (tp within a node of 8, dividing heads and vocabulary)."""
    out = []
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4, 8):
            if gpus % (tp * pp) or shape.n_head % tp or shape.vocab % tp or pp > shape.n_layer:
                continue
            if tp * pp == 1 or (tp, pp) in ((1, 2), (1, 8), (2, 8)):
                continue  # dp alone is the ddp row; layouts nobody picks are left out to keep the table short
            out.append(Launch(f"nanotron tp{tp} pp{pp}", "nanotron", tp, pp))
    return out


def _states(shape: ModelShape, launch: Launch, gpus: int) -> tuple[int, int, int, int]:
    """(weights, gradients, optimizer, buffers) in bytes on one rank."""
    params, n, p = shape.params(), gpus, shape.param_bytes
    layer = shape.layer_params()
    mask = shape.buffer_bytes()
    if launch.kind == "ddp":
        return params * p, params * p, 2 * params * p, params * p + mask
    if launch.kind in ("zero1", "zero2"):
        bucket = 2 * shape.n_embd**2 * 2  # reduce + all-gather buckets of hidden_size^2 (transformers' "auto")
        grads = 2 * params if launch.kind == "zero1" else 2 * params // n
        return 2 * params, grads, 12 * params // n, bucket + mask
    if launch.kind == "zero3":
        gathered = 2 * max(layer, shape.vocab * shape.n_embd) * 2
        return 2 * params // n, 2 * params // n, 12 * params // n, gathered + 2 * shape.n_embd**2 * 2 + mask
    if launch.kind == "fsdp2":
        root = shape.embedding_params() + 2 * shape.n_embd
        gathered = (root + 2 * layer) * 2 * 2  # bf16 parameters and their bf16 gradients
        return 4 * params // n, 4 * params // n, 8 * params // n, gathered + mask
    if launch.kind == "nanotron":
        stage = (math.ceil(shape.n_layer / launch.pp) * layer + shape.embedding_params()) // launch.tp
        dp = max(1, launch.dp(gpus))
        optimizer = 12 * stage // (dp if launch.zero_stage == 1 else 1)
        ddp_bucket = 25 * 2**20  # ddp_bucket_cap_mb: 25 in the engine's config
        return 2 * stage, 6 * stage, optimizer, ddp_bucket + mask
    raise ValueError(f"unknown launch kind {launch.kind!r}")


def memory_per_rank(
    shape: ModelShape, launch: Launch, gpus: int, seq_length: int, micro_batch: int, setting: ActivationSetting
) -> Memory:
    weights, gradients, optimizer, buffers = _states(shape, launch, gpus)
    if launch.kind == "nanotron":
        setting = ActivationSetting(**{**asdict(setting), "tp": launch.tp})
    activations = saved_bytes(shape, seq_length, micro_batch, setting)
    peak_extra = recompute_bytes(shape, seq_length, micro_batch, setting)
    peak_extra += seq_length * micro_batch * shape.vocab * (4 + setting.act_bytes) // setting.tp  # logits' grads
    return Memory(weights, gradients, optimizer, activations, buffers + peak_extra)


def fits(memory: Memory, device_gib: float) -> bool:
    return memory.total <= USABLE * device_gib * GIB


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
