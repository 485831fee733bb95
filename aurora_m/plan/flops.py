"""FLOPs of a training step of GPTBigCode: every matrix product, attention included, backward counted.

Per token of a sequence of ``s`` tokens, forward (a multiply-add is 2 FLOPs; h = n_embd, d = head dim,
kv = d for multi-query, f = n_inner, V = vocabulary):

    per layer   2 h (h + 2 kv)     c_attn (queries, the one shared key and value head)
              + 2 s h + 2 s h      attention scores Q K^T and their product with V (all n_head heads,
                                   the shared K/V broadcast; the full s x s square, as PaLM's and
                                   Megatron's model FLOPs count it, though a causal kernel skips half)
              + 2 h h              c_proj
              + 4 h f              c_fc and the MLP's c_proj
    once        2 h V              the output projection (tied to the token embedding)

Backward is twice the forward (a gradient for the input and one for the weight of every product):
3x in all. Activation checkpointing recomputes the layers' forward once more; those FLOPs are not
model FLOPs (MFU counts the work the model needs, not the work a launch chooses), so they are reported
apart. Embedding look-ups, norms, GELU and softmax are not matrix products and are left out, as
``torch.utils.flop_counter.FlopCounterMode`` leaves them out (the test measures against it).
"""

from __future__ import annotations

from .shape import ModelShape


def layer_forward_flops_per_token(shape: ModelShape, seq_length: int) -> int:
    h, f, kv = shape.n_embd, shape.n_inner, shape.kv_dim
    return 2 * h * (h + 2 * kv) + 4 * seq_length * h + 2 * h * h + 4 * h * f


def forward_flops_per_token(shape: ModelShape, seq_length: int) -> int:
    return shape.n_layer * layer_forward_flops_per_token(shape, seq_length) + 2 * shape.n_embd * shape.vocab


def training_flops_per_token(shape: ModelShape, seq_length: int) -> int:
    """Model FLOPs of forward + backward per trained token."""
    return 3 * forward_flops_per_token(shape, seq_length)


def recompute_flops_per_token(shape: ModelShape, seq_length: int) -> int:
    """What activation checkpointing adds: the layers' forward, run again in backward (not model FLOPs)."""
    return shape.n_layer * layer_forward_flops_per_token(shape, seq_length)


def flops_per_step(shape: ModelShape, seq_length: int, sequences_per_step: int) -> int:
    return training_flops_per_token(shape, seq_length) * seq_length * sequences_per_step
