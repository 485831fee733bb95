"""``flash_attn_varlen_func`` (what nanotron's starcoder2 CoreAttention calls) with PyTorch's SDPA."""

import torch
from torch.nn import functional as F  # noqa: N812 - PyTorch's own spelling


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
):
    """q ``[total_q, heads, d]``, k / v ``[total_k, kv_heads, d]`` (one K/V head: multi-query), sequences cut by
    the cumulative lengths; returns ``[total_q, heads, d]``. Causal as flash-attn 2: aligned to the bottom right,
    which for equal query and key lengths is the usual lower triangle."""
    if window_size != (-1, -1) or alibi_slopes is not None or return_attn_probs:
        raise NotImplementedError("the CPU port implements full causal or non-causal attention only")
    out = []
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe, ks, ke = (int(x) for x in (cu_seqlens_q[i], cu_seqlens_q[i + 1], cu_seqlens_k[i], cu_seqlens_k[i + 1]))
        if causal and qe - qs != ke - ks:
            raise NotImplementedError("causal attention with a key cache (decoding) is not ported")
        query, key, value = (t.transpose(0, 1)[None] for t in (q[qs:qe], k[ks:ke], v[ks:ke]))
        heads = query.shape[1]
        key, value = key.expand(-1, heads, -1, -1), value.expand(-1, heads, -1, -1)
        attended = F.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout_p, is_causal=causal, scale=softmax_scale
        )
        out.append(attended[0].transpose(0, 1))
    return torch.cat(out, 0)


def flash_attn_func(*args, **kwargs):
    raise NotImplementedError("flash_attn_func is not used by the GPTBigCode path (CPU port)")


flash_attn_with_kvcache = flash_attn_func


def __getattr__(name):  # the backward kernels ring attention imports at module level, never called here
    if name.startswith("__"):
        raise AttributeError(name)
    return flash_attn_func
