"""Mix tokenized sources by a token budget and pack them into fixed-length training sequences.

The budget is split between sources by weight. A source smaller than its share repeats (each pass
in a fresh seeded order); a larger one is subsampled. Packing is "wrapped": documents are joined
with ``<|endoftext|>`` and cut into ``seq_length`` blocks, as Megatron-style continual pretraining
does with SDPA/eager attention (documents in one block can see each other; see stack.md on why
padding-free packing needs FlashAttention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Draw:
    name: str
    weight: float
    target_share: float
    docs_available: int
    tokens_available: int
    docs_drawn: int
    tokens_drawn: int
    epochs: float
    share: float = 0.0


def draw_documents(lengths: np.ndarray, quota: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of documents, in passes of fresh permutations, until their tokens reach ``quota``."""
    if quota <= 0:
        return np.zeros(0, dtype=np.int64)
    total = int(lengths.sum())
    passes = max(1, -(-quota // total))  # ceil
    order = np.concatenate([rng.permutation(len(lengths)) for _ in range(passes)])
    cumulative = np.cumsum(lengths[order])
    stop = int(np.searchsorted(cumulative, quota)) + 1  # include the document that crosses the quota
    return order[:stop]


def plan_mixture(lengths: dict[str, np.ndarray], weights: dict[str, float], budget: int, seed: int):
    """Which documents of which source go into a dataset of ``budget`` tokens."""
    rng = np.random.default_rng(seed)
    total_weight = sum(weights.values())
    picks, draws = {}, []
    for name, doc_lengths in lengths.items():
        share = weights[name] / total_weight
        idx = draw_documents(doc_lengths, int(round(budget * share)), rng)
        picks[name] = idx
        tokens = int(doc_lengths[idx].sum())
        draws.append(Draw(name=name, weight=weights[name], target_share=share, docs_available=len(doc_lengths),
                          tokens_available=int(doc_lengths.sum()), docs_drawn=len(idx), tokens_drawn=tokens,
                          epochs=tokens / max(1, int(doc_lengths.sum()))))
    drawn = sum(d.tokens_drawn for d in draws)
    for d in draws:
        d.share = d.tokens_drawn / max(1, drawn)
    return picks, draws


def pack_wrapped(docs: list[list[int]], seq_length: int, eos_id: int) -> tuple[np.ndarray, int]:
    """Join documents (each followed by EOS) and cut into blocks; returns blocks and dropped tail tokens."""
    if not docs:
        return np.zeros((0, seq_length), dtype=np.int64), 0
    flat = np.concatenate([np.append(np.asarray(d, dtype=np.int64), eos_id) for d in docs])
    n_blocks = len(flat) // seq_length
    return flat[: n_blocks * seq_length].reshape(n_blocks, seq_length), int(len(flat) - n_blocks * seq_length)


def mix_and_pack(tokenized: dict[str, list[list[int]]], weights: dict[str, float], budget: int,
                 seq_length: int, eos_id: int, seed: int):
    """Blocks of ``seq_length`` tokens drawn from the sources by weight, and a report of the mixture."""
    lengths = {name: np.array([len(d) + 1 for d in docs], dtype=np.int64) for name, docs in tokenized.items()}
    picks, draws = plan_mixture(lengths, weights, budget, seed)
    order = [(name, int(i)) for name, idx in picks.items() for i in idx]
    rng = np.random.default_rng(seed + 1)
    order = [order[j] for j in rng.permutation(len(order))]  # sources interleaved through the stage
    blocks, dropped = pack_wrapped([tokenized[name][i] for name, i in order], seq_length, eos_id)
    report = {
        "budget_tokens": budget,
        "seq_length": seq_length,
        "sequences": int(blocks.shape[0]),
        "tokens": int(blocks.size),
        "dropped_tail_tokens": dropped,
        "sources": [asdict(d) for d in draws],
    }
    return blocks, report


def packed_collator(features):
    """Packed blocks are all full length: labels are the inputs (EOS included, nothing padded)."""
    import torch

    ids = torch.stack([torch.as_tensor(f["input_ids"]) for f in features])
    return {"input_ids": ids, "labels": ids.clone()}
