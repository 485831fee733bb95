"""Per-language perplexity of a model on held-out documents.

Each document (EOS appended) is scored on its own, never packed against another: one window when it fits in
``seq_length`` tokens, else a sliding window (``perplexity_stride``) so every token is scored once with up to
``seq_length - stride`` tokens of context. Perplexity is ``exp`` of the token-weighted mean NLL over all the
language's scored tokens. Windows are batched (padded, masked).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict

from ..data.sources import load_source
from ..errors import RecipeError
from ..source_spec import source_specs
from .arguments import EvalArguments

logger = logging.getLogger(__name__)


def heldout_texts(eval_args: EvalArguments, config_file) -> tuple[dict[str, list[str]], list]:
    """Held-out documents per language, read once for every variant."""
    texts, reports = {}, []
    for spec in source_specs(eval_args.perplexity_sources, "perplexity_sources", config_file):
        docs, report = load_source(spec, str(config_file), "perplexity_sources")
        texts[spec.name] = list(docs["text"])
        reports.append(asdict(report))
    return texts, reports


def document_windows(ids: list[int], seq_length: int, stride: int) -> list[tuple[list[int], int]]:
    """A document as (window, tokens to score) pairs: the first window scores all its tokens; each later one
    moves by ``stride`` and scores only its last ``stride`` tokens, seeing up to ``seq_length - stride`` of
    context before them. Every token after the first is scored exactly once."""
    if len(ids) <= seq_length:
        return [(ids, len(ids) - 1)]
    windows = [(ids[:seq_length], seq_length - 1)]
    end = seq_length
    while end < len(ids):
        new_end = min(end + stride, len(ids))
        windows.append((ids[max(0, new_end - seq_length) : new_end], new_end - end))
        end = new_end
    return windows


def score_language(
    model,
    tokenizer,
    docs: list[str],
    seq_length: int,
    stride: int,
    batch_size: int,
    max_windows: int | None = None,
    desc: str = "perplexity",
) -> dict:
    """Token-weighted mean NLL over the documents (EOS appended, so the end of a document counts too)."""
    import torch
    from tqdm.auto import tqdm

    windows = []
    for doc in docs:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        windows.extend(w for w in document_windows(ids, seq_length, stride) if w[1] > 0)
        if max_windows and len(windows) >= max_windows:
            windows = windows[:max_windows]
            break
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    model.eval()
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch"):
        batch = windows[start : start + batch_size]
        width = max(len(w) for w, _ in batch)
        ids = torch.full((len(batch), width), tokenizer.eos_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (window, scored) in enumerate(batch):
            ids[i, : len(window)] = torch.tensor(window)
            mask[i, : len(window)] = 1
            labels[i, len(window) - scored : len(window)] = ids[i, len(window) - scored : len(window)]
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
        target = labels[:, 1:].reshape(-1).to(device)
        nll += torch.nn.functional.cross_entropy(shifted, target, ignore_index=-100, reduction="sum").item()
        count += int((target != -100).sum())
    return {"loss": nll / max(1, count), "tokens": count, "windows": len(windows)}


def run_perplexity(
    model, tokenizer, eval_args: EvalArguments, config_file, texts: dict[str, list[str]], batch_size: int = 8
) -> dict:
    """The perplexity suite of one variant: ``{"suite": "perplexity", "perplexity": {lang: ppl}, "loss": {lang:
    mean NLL}, "eval_tokens": {lang: scored tokens}, "windows": {...}, "seq_length", "stride"}``."""
    stride = eval_args.perplexity_stride or max(1, eval_args.seq_length // 2)
    if not 0 < stride <= eval_args.seq_length:
        raise RecipeError(
            config_file, "perplexity_stride", f"expected 1..seq_length ({eval_args.seq_length}), got {stride}"
        )
    scores = {}
    for lang, docs in texts.items():
        scores[lang] = score_language(
            model,
            tokenizer,
            docs,
            eval_args.seq_length,
            stride,
            batch_size,
            eval_args.max_eval_blocks,
            desc=f"perplexity {lang}",
        )
        if scores[lang]["tokens"] == 0:
            raise RecipeError(config_file, f"perplexity_sources[{lang}]", "held-out text has no tokens to score")
    return {
        "suite": "perplexity",
        "seq_length": eval_args.seq_length,
        "stride": stride,
        "perplexity": {lang: math.exp(s["loss"]) for lang, s in scores.items()},
        "loss": {lang: s["loss"] for lang, s in scores.items()},
        "eval_tokens": {lang: s["tokens"] for lang, s in scores.items()},
        "windows": {lang: s["windows"] for lang, s in scores.items()},
    }


def perplexity_suite(
    model, tokenizer, eval_args: EvalArguments, config_file, *, batch_size: int = 8, cache: dict | None = None, **_
) -> dict:
    """The eval stage's perplexity suite: held-out text read once for all variants (``cache``)."""
    cache = cache if cache is not None else {}
    if "heldout_texts" not in cache:
        cache["heldout_texts"] = heldout_texts(eval_args, config_file)
    texts, reports = cache["heldout_texts"]
    return {**run_perplexity(model, tokenizer, eval_args, config_file, texts, batch_size), "sources": reports}
