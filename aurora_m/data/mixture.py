"""Wrapped packing for evaluation: documents joined with ``<|endoftext|>`` and cut into fixed windows.

Training reads the same layout from the corpus' token shards (:mod:`aurora_m.data.stream`); the
held-out perplexity eval packs its texts in memory with these helpers (a few thousand documents).
Documents in one block can see each other, as in Megatron-style continual pretraining with SDPA/eager
attention (see stack.md on why padding-free packing needs FlashAttention).
"""

from __future__ import annotations

import numpy as np

TOKEN_DTYPE = np.int32  # vocabularies are far below 2**31; half the memory of int64


def join_documents(docs, eos_id: int) -> np.ndarray:
    """One stream: each document followed by EOS."""
    eos = np.array([eos_id], dtype=TOKEN_DTYPE)
    parts = [part for doc in docs for part in (np.asarray(doc, dtype=TOKEN_DTYPE), eos)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)


def cut_blocks(stream: np.ndarray, seq_length: int) -> tuple[np.ndarray, int]:
    """Full ``seq_length`` blocks of a stream, and how many tokens were left over."""
    n_blocks = len(stream) // seq_length
    return stream[: n_blocks * seq_length].reshape(n_blocks, seq_length), int(len(stream) - n_blocks * seq_length)


def pack_wrapped(docs: list[list[int]], seq_length: int, eos_id: int) -> tuple[np.ndarray, int]:
    """Join documents (each followed by EOS) and cut into blocks; returns blocks and dropped tail tokens."""
    return cut_blocks(join_documents(docs, eos_id), seq_length)


def packed_collator(features):
    """Packed blocks are all full length: labels are the inputs (EOS included, nothing padded)."""
    import torch

    ids = torch.stack([torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features])
    return {"input_ids": ids, "labels": ids.clone()}
