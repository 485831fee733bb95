"""Batched generation for the code and safety suites: left-padded batches through ``model.generate``, stopped
by stop strings (transformers' ``stop_strings``), each completion cut at its first stop string.

Greedy when ``temperature`` is 0; otherwise sampling with ``top_p``, seeded (``seed``) so a rerun
produces the same completions on the same hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..model_families import model_facts

logger = logging.getLogger(__name__)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(ends)] if ends else text


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_samples: int = 1,
    batch_size: int = 8,
    seed: int = 0,
    desc: str = "generating",
) -> list[list[str]]:
    """``num_samples`` completions per prompt (the prompt itself not included), in prompt order."""
    import torch
    from tqdm.auto import tqdm

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues on the right
    sampling = temperature > 0
    options = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling,
        "num_return_sequences": num_samples,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if sampling:
        options.update(temperature=temperature, top_p=top_p)
    else:
        options.update(temperature=None, top_p=None, top_k=None)  # no warnings about unused sampling settings
    if stop:
        options.update(stop_strings=list(stop), tokenizer=tokenizer)
    limit = model_facts(model.config.to_dict()).positions  # n_positions, max_position_embeddings: the family's
    device = next(model.parameters()).device
    out: list[list[str]] = []
    model.eval()
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
            batch = list(prompts[start : start + batch_size])
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            if limit and enc["input_ids"].shape[1] + max_new_tokens > limit:
                keep = max(1, limit - max_new_tokens)  # the prompt's end matters most: keep it
                enc = {k: v[:, -keep:] for k, v in enc.items()}
            if sampling:
                torch.manual_seed(seed + start)
            with torch.no_grad():
                ids = model.generate(**{k: v.to(device) for k, v in enc.items()}, **options)
            new = ids[:, enc["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for i in range(len(batch)):
                out.append([cut_at_stop(t, stop) for t in texts[i * num_samples : (i + 1) * num_samples]])
    finally:
        tokenizer.padding_side = padding_side
    return out
