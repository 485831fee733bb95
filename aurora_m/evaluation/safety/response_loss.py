"""How likely a variant finds the reference responses of held-out pairs: refusals that explain (the red-team
test split) and helpful answers to benign look-alikes.

Safety tuning should make the refusals more likely (their loss drops) without making the model a blanket
refuser (the benign answers' loss must not rise much). The loss is the mean NLL per response token (EOS
included), the tokens the chat template's generation markers select: exactly what SFT trains on.
"""

from __future__ import annotations

import math

from ...data.sources import read_source
from ...source_spec import source_specs


def read_pairs(sources: list[dict], key: str, config_file) -> list[list[dict]]:
    """The held-out chats of every source of a list whose format holds chats (prompt-only sources hold none)."""
    chats = []
    for spec in source_specs(sources, key, config_file):
        if not spec.source_format.can_give("chat"):  # prompts alone: no response to score
            continue
        docs, _ = read_source(spec, str(config_file), key)
        # a prompt-only row of an instruction source has no reference response: its "loss" would be the EOS's
        chats += [chat for chat in docs.to_chats()["messages"] if _has_response(chat)]
    return chats


def _has_response(chat: list[dict]) -> bool:
    return any(m["role"] == "assistant" and str(m.get("content") or "").strip() for m in chat)


def response_nll(model, tokenizer, chats: list[list[dict]], batch_size: int = 8) -> tuple[float, int]:
    """(mean NLL per response token, response tokens) of ``chats`` under ``model``; (nan, 0) for no chats."""
    import torch

    encoded = [
        tokenizer.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True) for chat in chats
    ]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[row, :n] = torch.tensor(e["input_ids"])
            attention[row, :n] = 1
            mask = torch.tensor(e["assistant_masks"], dtype=torch.bool)
            labels[row, :n] = torch.where(mask, ids[row, :n], torch.tensor(-100))
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        shifted = labels[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += nll.item()
        count += int((shifted != -100).sum())
    return (total / count if count else math.nan), count


def response_losses(
    model,
    tokenizer,
    safety_sources: list[dict],
    benign_sources: list[dict],
    config_file,
    batch_size: int = 8,
    cache: dict | None = None,
) -> dict:
    """``{"refusals": {"loss", "pairs", "tokens"}, "benign": {...}}`` for the safety suite's result."""
    cache = cache if cache is not None else {}
    if "safety:pairs" not in cache:
        cache["safety:pairs"] = (
            read_pairs(safety_sources, "safety_sources", config_file),
            read_pairs(benign_sources, "benign_sources", config_file),
        )
    out = {}
    for name, chats in zip(("refusals", "benign"), cache["safety:pairs"]):
        if chats:
            loss, tokens = response_nll(model, tokenizer, chats, batch_size)
            out[name] = {"loss": round(loss, 6), "pairs": len(chats), "tokens": tokens}
    return out
