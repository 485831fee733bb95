"""Activation memory of GPTBigCode's training step: the tensors autograd saves for backward, counted.

Per token of one layer of transformers' ``GPTBigCodeBlock`` (h = n_embd, f = n_inner, a = heads, kv = the
shared key/value width, s = tokens per sequence, e = bytes of an activation, m = bytes of a dropout mask):

    layer norms     inputs and outputs of ln_1 and ln_2 (4 h e), mean and 1/std in fp32 (16 bytes)
    attention out   the input of c_proj (h e)
    MLP             GELU's input and output (2 f e)
    dropouts        one mask after attention, one after the MLP (2 h m, when resid_pdrop > 0)
    attention       fused kernel (flash / memory-efficient / CPU flash): c_attn's output that the query
                    views (h + 2 kv), key and value (2 kv), the output (h), in e; log-sum-exp in fp32 (4 a)
                    math kernel (eager, or SDPA's fallback): query, repeated key and value (3 h e), the
                    softmax in fp32 (4 a s) and, with attention dropout, its mask and the dropped weights
                    (a s (m + e)); without dropout a 16-bit step also keeps the softmax cast to e (a s e).
                    SDPA's math fallback computes in fp32 whatever the dtype: its terms count 4 bytes

Once per token: the input ids and labels (int64), the embedding dropout's mask, the input of ln_f and of
the output projection (2 h e), and the log-softmax of the loss in fp32 (4 V): the logits, upcast.

With activation checkpointing (transformers' non-reentrant ``torch.utils.checkpoint``) a layer keeps only
its input (h e); backward recomputes one layer at a time, so one layer's full set is live again at the
peak (``recompute_bytes``). Tensor parallelism splits the attention and MLP terms over its ranks; the
layer-norm terms, masks and the shared key/value head stay whole on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shape import ModelShape

FUSED_KERNELS = ("sdpa", "flash_attention_2", "flash_attention_3")


@dataclass(frozen=True)
class ActivationSetting:
    act_bytes: int = 2  # bf16 / fp16 training (autocast or 16-bit parameters); 4 in float32
    mask_bytes: int = 1  # a dropout mask: bool on CUDA/ROCm; on the CPU a mask of the activation dtype
    fused_attention: bool = True
    checkpointing: bool = False
    tp: int = 1
    math_in_fp32: bool = False  # SDPA's math fallback (the CPU with attention dropout) upcasts to fp32


def cpu_setting(shape: ModelShape, act_bytes: int, checkpointing: bool) -> ActivationSetting:
    """The CPU's kernels: masks in the activation dtype; SDPA falls back to fp32 math with attention dropout."""
    fused = fused_attention_for(shape, on_gpu=False)
    return ActivationSetting(
        act_bytes=act_bytes,
        mask_bytes=act_bytes,
        fused_attention=fused,
        checkpointing=checkpointing,
        math_in_fp32=shape.attn in FUSED_KERNELS and not fused,
    )


def fused_attention_for(shape: ModelShape, on_gpu: bool) -> bool:
    """Whether the attention kernel keeps O(s) per head (flash-style) or the s x s weights (math)."""
    if shape.attn not in FUSED_KERNELS:
        return False
    # the CPU's flash kernel has no dropout: SDPA falls back to the math kernel when attention dropout is on
    return on_gpu or shape.attn_pdrop == 0


def layer_bytes_per_token(shape: ModelShape, seq_length: int, setting: ActivationSetting) -> float:
    """Everything one layer saves per token, without checkpointing (on one tensor-parallel rank)."""
    h, f, a, kv = shape.n_embd, shape.n_inner, shape.n_head, shape.kv_dim
    e, m, tp = setting.act_bytes, setting.mask_bytes, setting.tp
    whole = 4 * h * e + 16 + (2 * h * m if shape.resid_pdrop > 0 else 0)
    split = h * e + 2 * f * e
    if setting.fused_attention:
        split += (h + 2 * kv + 2 * kv + h) * e + 4 * a
    else:
        ea, ma = (4, 4) if setting.math_in_fp32 else (e, m)
        scores = 4 + (ma + ea if shape.attn_pdrop > 0 else (0 if ea == 4 else ea))
        split += 3 * h * ea + a * seq_length * scores
    return whole + split / tp


def outside_layers_bytes_per_token(shape: ModelShape, setting: ActivationSetting) -> float:
    h, e, m = shape.n_embd, setting.act_bytes, setting.mask_bytes
    ids = 8 + 8  # input ids, labels (int64)
    embedding_mask = h * m if shape.embd_pdrop > 0 else 0
    return ids + embedding_mask + 2 * h * e + 8 + 4 * shape.vocab / setting.tp


def saved_bytes(shape: ModelShape, seq_length: int, micro_batch: int, setting: ActivationSetting, layers=None) -> int:
    """Bytes autograd holds for backward after the forward of one micro-batch (``layers``: default all)."""
    layers = shape.n_layer if layers is None else layers
    per_layer = (
        shape.n_embd * setting.act_bytes
        if setting.checkpointing
        else layer_bytes_per_token(shape, seq_length, setting)
    )
    tokens = seq_length * micro_batch
    return int(tokens * (layers * per_layer + outside_layers_bytes_per_token(shape, setting)))


def recompute_bytes(shape: ModelShape, seq_length: int, micro_batch: int, setting: ActivationSetting) -> int:
    """With checkpointing, the one layer backward recomputes (live at the peak); 0 without."""
    if not setting.checkpointing:
        return 0
    return int(seq_length * micro_batch * layer_bytes_per_token(shape, seq_length, setting))
