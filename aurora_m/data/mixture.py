"""Mix sources by a token budget and pack them into fixed-length training sequences.

The budget is split between sources by weight into exact quotas (largest remainder: they sum to the
budget). Each source is tokenized in a seeded order, in batches, only until its quota is reached;
the document that crosses the quota is cut, so a source gives exactly its quota and the dataset
exactly the budget (less the tail that does not fill a last block). A source smaller than its quota
is tokenized once and repeats, each pass in a fresh seeded order; a larger one is subsampled. No
document gives more than ``max_doc_tokens`` tokens, and a long text is cut by characters before it is
tokenized, so memory and time follow the budget, not the size of the sources or of their largest
document. Token counts include each document's ``<|endoftext|>``, as the packed stream does.

Packing is "wrapped": documents are joined with ``<|endoftext|>`` and cut into ``seq_length`` blocks,
as Megatron-style continual pretraining does with SDPA/eager attention (documents in one block can
see each other; see stack.md on why padding-free packing needs FlashAttention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from .mixer import source_rng, split_budget  # their home is the mixer now; imported here for callers

CHARS_PER_TOKEN_BOUND = 16  # generous: real tokenizers average 3-5 characters per token
MAX_BATCH_DOCS = 1024
BATCH_CHARS = 8_000_000  # texts held at once while tokenizing
TOKEN_DTYPE = np.int32  # vocabularies are far below 2**31; half the memory of int64

Encode = Callable[[list[str]], list[list[int]]]


class Documents(Protocol):
    """A source's documents, read on demand (``sources.SourceDocs``, or a list wrapper in tests)."""

    def __len__(self) -> int: ...

    def texts(self, positions: np.ndarray) -> list[str]: ...


@dataclass
class Draw:
    """What one source gave to the mixture. Token counts include one EOS per document."""

    name: str
    weight: float
    target_share: float
    quota_tokens: int  # budget * target_share, rounded so that the quotas sum to the budget
    docs_available: int  # documents kept by the reader
    tokens_available: int | None  # tokens of all those documents; None if the quota was reached before the end
    docs_drawn: int  # repeats counted, the document cut at the quota included
    tokens_drawn: int  # == quota_tokens
    epochs: float  # tokens_drawn / tokens_available; when that is unknown, docs_drawn / docs_available
    share: float = 0.0  # of all tokens drawn
    docs_tokenized: int = 0  # each document is tokenized at most once
    tokens_tokenized: int = 0
    docs_cut: int = 0  # documents longer than max_doc_tokens, cut to it
    tokens_cut: int = 0  # tokens beyond max_doc_tokens, among the characters that were tokenized
    chars_cut: int = 0  # characters beyond max_doc_tokens * 16, never tokenized
    quota_cut_tokens: int = 0  # tokens of the document crossing the quota that were left out


def draw_source(name: str, docs: Documents, encode: Encode, quota: int, max_doc_tokens: int,
                rng: np.random.Generator, weight: float = 1.0, target_share: float = 1.0):
    """Token arrays (in draw order, without EOS) giving exactly ``quota`` tokens with their EOS, and a Draw."""
    n = len(docs)
    draw = Draw(name=name, weight=weight, target_share=target_share, quota_tokens=quota, docs_available=n,
                tokens_available=None, docs_drawn=0, tokens_drawn=0, epochs=0.0)
    pieces: list[np.ndarray] = []
    if quota <= 0:
        return pieces, draw
    if n == 0:
        raise ValueError(f"source {name} has no documents to draw from")
    max_chars = max_doc_tokens * CHARS_PER_TOKEN_BOUND
    remaining = quota

    def take(doc: np.ndarray) -> None:
        nonlocal remaining
        used = min(len(doc) + 1, remaining)
        pieces.append(doc[: used - 1])
        draw.quota_cut_tokens = len(doc) + 1 - used
        remaining -= used

    # first pass: tokenize in the seeded order, in growing batches, until the quota is reached
    order = rng.permutation(n)
    first_pass: list[np.ndarray] = []
    batch, position, chars_read = 1, 0, 0
    while remaining > 0 and position < n:
        texts = docs.texts(order[position: position + batch])
        position += len(texts)
        chars_read += sum(len(t) for t in texts)
        for text, ids in zip(texts, encode([t[:max_chars] for t in texts])):
            doc = np.asarray(ids[:max_doc_tokens], dtype=TOKEN_DTYPE)
            if len(ids) > max_doc_tokens or len(text) > max_chars:
                draw.docs_cut += 1
                draw.tokens_cut += max(0, len(ids) - max_doc_tokens)
                draw.chars_cut += max(0, len(text) - max_chars)
            first_pass.append(doc)
            draw.docs_tokenized += 1
            draw.tokens_tokenized += len(doc) + 1
            if remaining > 0:
                take(doc)
        mean_tokens = draw.tokens_tokenized / draw.docs_tokenized
        needed = math.ceil(remaining / mean_tokens) + 1
        batch = max(1, min(2 * batch, MAX_BATCH_DOCS, needed, BATCH_CHARS * position // max(1, chars_read)))
    if draw.docs_tokenized == n:
        draw.tokens_available = draw.tokens_tokenized
    # later passes (a source smaller than its quota): fresh seeded orders of the same token arrays
    if remaining > 0:
        by_index = [None] * n
        for index, doc in zip(order, first_pass):
            by_index[index] = doc
        while remaining > 0:
            for index in rng.permutation(n):
                take(by_index[index])
                if remaining == 0:
                    break
    draw.docs_drawn = len(pieces)
    draw.tokens_drawn = quota - remaining
    draw.epochs = (draw.tokens_drawn / draw.tokens_available if draw.tokens_available
                   else draw.docs_drawn / n)
    return pieces, draw


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


def mix_and_pack(sources: dict[str, Documents], weights: dict[str, float], budget: int, seq_length: int,
                 eos_id: int, seed: int, encode: Encode, max_doc_tokens: int = 32768):
    """Blocks of ``seq_length`` tokens (int32) drawn from the sources by weight, and a report of the mixture.

    ``encode`` turns a batch of texts into token ids (no special tokens). Same seed, same blocks.
    """
    if max_doc_tokens <= 0:
        raise ValueError(f"max_doc_tokens must be positive, got {max_doc_tokens}")
    quotas = split_budget(budget, weights)
    total_weight = sum(weights.values())
    pieces, draws = [], []
    for name, docs in sources.items():
        drawn, draw = draw_source(name, docs, encode, quotas[name], max_doc_tokens, source_rng(seed, name),
                                  weight=weights[name], target_share=weights[name] / total_weight)
        pieces.extend(drawn)
        draws.append(draw)
    total = sum(d.tokens_drawn for d in draws)
    for d in draws:
        d.share = d.tokens_drawn / max(1, total)
    order = np.random.default_rng(seed % 2**64).permutation(len(pieces))  # sources interleaved through the stage
    stream = join_documents((pieces[i] for i in order), eos_id)
    del pieces
    blocks, dropped = cut_blocks(stream, seq_length)
    report = {
        "budget_tokens": budget,
        "seq_length": seq_length,
        "max_doc_tokens": max_doc_tokens,
        "sequences": int(blocks.shape[0]),
        "tokens": int(blocks.size),
        "dropped_tail_tokens": dropped,
        "sources": [asdict(d) for d in draws],
    }
    return blocks, report


def packed_collator(features):
    """Packed blocks are all full length: labels are the inputs (EOS included, nothing padded)."""
    import torch

    ids = torch.stack([torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features])
    return {"input_ids": ids, "labels": ids.clone()}
