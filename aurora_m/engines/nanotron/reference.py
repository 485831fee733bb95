"""A plain-PyTorch forward pass of GPTBigCode over tensors in nanotron's layout (no nanotron import).

It proves the conversion's semantics on a CPU: if these logits equal transformers' ``GPTBigCodeForCausalLM``
logits, the q / kv split of ``c_attn``, the learned positions and the tied head are where the nanotron model
(:mod:`.model`, same parameter names) reads them. With ``tensor_parallel=True`` it computes as nanotron does
at TP=N, shard by shard: the vocabulary-parallel embedding summed over ranks, each rank's query heads against
the replicated K/V head, row-parallel projections as partial sums plus one bias, logits concatenated over
the vocabulary shards. Matching logits then also prove which dimension each shard was cut along.
"""

from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import EMBED, FINAL_LN, POSITIONS, block, parse_metadata, shard_files
from .convert import read_config, read_param


def read_shards(root: Path, name: str) -> list:
    """A parameter's TP shards in the order of the slice of the whole tensor each holds (one when replicated)."""
    from safetensors import safe_open

    shards = []
    for path in shard_files(root, name):
        with safe_open(path, framework="pt") as f:
            data, meta = f.get_tensor("data"), f.metadata() or {}
        start = 0
        if "unsharded_shape" in meta:
            pairs, _ = parse_metadata(meta)
            start = [s.start or 0 for s in pairs[0][1]]
        shards.append((start, data))
    return [data for _, data in sorted(shards, key=lambda s: s[0])]


def _activation(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def reference_logits(root: str | Path, input_ids, *, tensor_parallel: bool = False):
    """Logits ``[batch, seq, vocab]`` (float32) of the nanotron-layout checkpoint in ``root``."""
    import torch
    from torch.nn import functional as F  # noqa: N812 - PyTorch's own spelling

    root = Path(root)
    cfg = read_config(root)
    act = _activation(cfg.activation_function)
    eps, hd = cfg.layer_norm_epsilon, cfg.head_dim

    def whole(name):
        return read_param(root, name).float()

    def shards(name):
        return [t.float() for t in (read_shards(root, name) if tensor_parallel else [read_param(root, name)])]

    batch, seq = input_ids.shape
    if seq > cfg.max_position_embeddings:
        raise ValueError(f"{seq} tokens, but the model has {cfg.max_position_embeddings} learned positions")
    # vocabulary-parallel embedding: each rank looks up its own rows, the others' ids give zeros; summed
    x, offset = 0, 0
    for part in shards(EMBED):
        local = input_ids - offset
        inside = (local >= 0) & (local < part.shape[0])
        x = x + F.embedding(local.clamp(0, part.shape[0] - 1), part) * inside[..., None]
        offset += part.shape[0]
    x = x + whole(POSITIONS)[torch.arange(seq)][None]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    for i in range(cfg.num_hidden_layers):
        b = block(i)
        h = F.layer_norm(x, (cfg.hidden_size,), whole(f"{b}.ln_1.weight"), whole(f"{b}.ln_1.bias"), eps)
        kv = F.linear(h, whole(f"{b}.attn.qkv.kv.weight"), whole(f"{b}.attn.qkv.kv.bias"))
        k, v = kv.split([hd, hd], dim=-1)  # one K/V head shared by every query head (multi-query)
        out = 0
        for wq, bq, wo in zip(
            shards(f"{b}.attn.qkv.q.weight"), shards(f"{b}.attn.qkv.q.bias"), shards(f"{b}.attn.o.weight"), strict=True
        ):
            q = F.linear(h, wq, bq).view(batch, seq, -1, hd).transpose(1, 2)  # this rank's heads
            scores = q @ k[:, None].transpose(-1, -2) / (math.sqrt(hd) if cfg.scale_attn_weights else 1.0)
            probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            att = (probs @ v[:, None]).transpose(1, 2).reshape(batch, seq, -1)
            out = out + F.linear(att, wo)  # row-parallel: partial sums over the ranks' heads
        x = x + out + whole(f"{b}.attn.o.bias")
        h = F.layer_norm(x, (cfg.hidden_size,), whole(f"{b}.ln_2.weight"), whole(f"{b}.ln_2.bias"), eps)
        out = 0
        for w1, b1, w2 in zip(
            shards(f"{b}.ff.c_fc.weight"), shards(f"{b}.ff.c_fc.bias"), shards(f"{b}.ff.c_proj.weight"), strict=True
        ):
            out = out + F.linear(act(F.linear(h, w1, b1)), w2)
        x = x + out + whole(f"{b}.ff.c_proj.bias")
    x = F.layer_norm(x, (cfg.hidden_size,), whole(f"{FINAL_LN}.weight"), whole(f"{FINAL_LN}.bias"), eps)
    # the head is the token embedding (tied): column-parallel over the vocabulary, concatenated
    logits = torch.cat([F.linear(x, part) for part in shards(EMBED)], dim=-1)
    return logits[..., : cfg.vocab_size]
