"""Resolve a stage's mixture to a table: how many ``seq_length`` windows each source gives.

The stage's budget is ``W = train_tokens // seq_length`` windows, and the table always sums to exactly W.
Each source is resolved by one rule, in this order:

* ``tokens`` - a source with an absolute budget gets ``round(tokens / seq_length)`` windows;
* ``replay`` - sources marked ``replay`` (the base model's own distribution: English + code) share
  ``round(W * replay_share)`` windows by their natural size (available tokens); they take nothing else,
  so with ``replay_share: 0`` they get no windows;
* ``weight`` - without a stage temperature, what is left is split by weight (1.0 when unset);
* ``temperature`` - with a stage temperature T, what is left is split by ``p_i ∝ n_i ** (1 / T)``,
  n_i = available tokens: T = 1 keeps natural proportions, a larger T flattens them (XLM / gpt-neox style).

Integer windows come from largest remainder (ties keep source order), so shares are exact to a window.
When every non-replay source has a ``tokens`` budget, their rounded windows would rarely add up to W,
so W is split between them in proportion to their budgets instead (they must ask for W within a window
each). A source may be repeated up to ``max_epochs`` times (its own or the stage's); a budget that needs
more is refused with the numbers to change, as is anything the budget cannot give.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError

logger = logging.getLogger(__name__)

EPOCH_SLACK = 1e-9  # float noise when a budget needs exactly max_epochs


@dataclass
class SourceSize:
    """One source after cleaning and tokenizing, with what the recipe asks of it."""

    name: str
    tokens: int  # tokens available (EOS included), from the .ds files
    windows: int  # full windows of seq_length available (per file: tokens // seq_length, summed)
    tokens_requested: int | None = None  # an absolute `tokens` budget for this source
    weight: float | None = None  # a relative weight (1.0 when unset and the stage has no temperature)
    replay: bool = False  # part of the base model's original distribution
    max_epochs: float | None = None  # per-source override of the stage's max_epochs


@dataclass
class MixRow:
    """One source's line in the resolved table."""

    name: str
    rule: str  # "tokens" | "weight" | "temperature" | "replay"
    share: float  # planned share of the stage's tokens (windows / W)
    windows: int  # windows drawn (exact; sum over rows == budget // seq_length)
    tokens: int  # windows * seq_length
    epochs: float  # windows / available windows
    available_tokens: int
    available_windows: int  # what the sampling index permutes, epoch by epoch


def split_budget(budget: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer quotas proportional to ``weights`` that sum to ``budget`` exactly (largest remainder)."""
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
    exact = {name: budget * w / total for name, w in weights.items()}
    quotas = {name: math.floor(x) for name, x in exact.items()}
    by_remainder = sorted(exact, key=lambda name: quotas[name] - exact[name])  # stable: ties keep source order
    for name in by_remainder[: budget - sum(quotas.values())]:
        quotas[name] += 1
    return quotas


def name_key(name: str) -> int:
    """A stable 64-bit number for a source name (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")


def source_rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    """A source's own random stream: its draw order does not change when other sources are added."""
    return np.random.default_rng([seed % 2**64, name_key(name), *extra])


def _source_key(name: str, field: str) -> str:
    return f"mixture[{name}].{field}"


def _check_stage(sizes, budget_tokens, seq_length, temperature, replay_share, max_epochs, config_file) -> int:
    """The stage-level errors; returns W."""
    if seq_length <= 0:
        raise RecipeError(config_file, "seq_length", f"expected a positive number of tokens, got {seq_length}")
    if budget_tokens < seq_length:
        raise RecipeError(
            config_file,
            "train_tokens",
            f"budget {budget_tokens} is smaller than one window of "
            f"seq_length {seq_length} tokens: expected at least {seq_length}",
        )
    if temperature is not None and not temperature > 0:
        raise RecipeError(
            config_file,
            "temperature",
            f"expected a number > 0 (1 keeps natural proportions, larger flattens them), got {temperature}",
        )
    if not 0 <= replay_share < 1:
        raise RecipeError(config_file, "replay_share", f"expected a fraction in [0, 1), got {replay_share}")
    if replay_share > 0 and not any(s.replay for s in sizes):
        raise RecipeError(
            config_file,
            "replay_share",
            f"is {replay_share} but no source is marked `replay: true`: "
            "mark the base model's sources (English, code) or set replay_share to 0",
        )
    if not max_epochs > 0:
        raise RecipeError(config_file, "max_epochs", f"expected a number > 0, got {max_epochs}")
    names = [s.name for s in sizes]
    if not names:
        raise RecipeError(config_file, "mixture", "expected at least one source")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise RecipeError(config_file, "mixture", f"source names must be unique, repeated: {', '.join(twice)}")
    for s in sizes:
        if s.max_epochs is not None and not s.max_epochs > 0:
            raise RecipeError(
                config_file, _source_key(s.name, "max_epochs"), f"expected a number > 0, got {s.max_epochs}"
            )
        if s.tokens_requested is not None and s.tokens_requested <= 0:
            raise RecipeError(
                config_file,
                _source_key(s.name, "tokens"),
                f"expected a positive token budget, got {s.tokens_requested}",
            )
        if s.weight is not None and not s.weight >= 0:
            raise RecipeError(config_file, _source_key(s.name, "weight"), f"expected a number >= 0, got {s.weight}")
        if s.tokens_requested is not None and s.weight is not None:
            raise RecipeError(
                config_file, _source_key(s.name, "weight"), "a source takes `tokens` or `weight`, not both: remove one"
            )
        if s.replay and s.tokens_requested is not None:
            raise RecipeError(
                config_file,
                _source_key(s.name, "tokens"),
                "a replay source is sized by replay_share and its natural size: remove `tokens`",
            )
        if s.replay and s.weight is not None:
            raise RecipeError(
                config_file,
                _source_key(s.name, "weight"),
                "a replay source is sized by replay_share and its natural size: remove `weight`",
            )
        if temperature is not None and s.weight is not None:
            raise RecipeError(
                config_file,
                _source_key(s.name, "weight"),
                f"the stage sets temperature {temperature}, "
                "which sizes sources by their natural size: remove the weight or the temperature",
            )
    return budget_tokens // seq_length


def _requested_windows(requested, flexible, room, seq_length, budget_tokens, config_file) -> dict[str, int]:
    """Windows of the sources with a ``tokens`` budget, given ``room`` windows left after replay."""
    exact = {s.name: s.tokens_requested / seq_length for s in requested}
    key = _source_key(requested[0].name, "tokens") if len(requested) == 1 else "train_tokens"
    if flexible:
        windows = {name: round(x) for name, x in exact.items()}
        total = sum(windows.values())
        if total > room:
            asked = sum(s.tokens_requested for s in requested)
            raise RecipeError(
                config_file,
                key,
                f"sources ask for {asked:,} tokens ({total:,} windows) but the stage "
                f"has room for {room * seq_length:,} (train_tokens {budget_tokens:,} less the replay "
                f"share): lower the sources' tokens or raise train_tokens",
            )
        return windows
    # only budgets: they must fill the stage; split it in their proportions so the table sums exactly
    if abs(sum(exact.values()) - room) > len(requested):
        asked = sum(s.tokens_requested for s in requested)
        key = key if sum(exact.values()) > room else "train_tokens"
        raise RecipeError(
            config_file,
            key,
            f"train_tokens is {budget_tokens:,} ({room * seq_length:,} after "
            f"the replay share) but the sources' tokens add up to {asked:,} and no source takes a "
            "weight: make them agree, or give a source a weight instead of tokens",
        )
    return split_budget(room, exact)


def resolve_mixture(
    sizes: list[SourceSize],
    budget_tokens: int,
    seq_length: int,
    *,
    temperature: float | None = None,
    replay_share: float = 0.0,
    max_epochs: float = 4.0,
    config_file="<stage config>",
) -> list[MixRow]:
    """The table, one row per source in the order given; raises RecipeError naming the key to change."""
    total = _check_stage(sizes, budget_tokens, seq_length, temperature, replay_share, max_epochs, config_file)
    replay = [s for s in sizes if s.replay]
    requested = [s for s in sizes if not s.replay and s.tokens_requested is not None]
    flexible = [s for s in sizes if not s.replay and s.tokens_requested is None]

    windows: dict[str, int] = {s.name: 0 for s in sizes}
    replay_windows = round(total * replay_share)
    if replay_windows:
        if not any(s.tokens > 0 for s in replay):
            raise RecipeError(
                config_file,
                "replay_share",
                f"is {replay_share} but the replay sources "
                f"({', '.join(s.name for s in replay)}) have no tokens after cleaning",
            )
        windows.update(split_budget(replay_windows, {s.name: float(s.tokens) for s in replay}))
    if requested:
        windows.update(
            _requested_windows(requested, flexible, total - replay_windows, seq_length, budget_tokens, config_file)
        )
    rest = total - sum(windows.values())
    if rest < 0:
        raise RecipeError(
            config_file,
            "replay_share",
            f"{replay_share} of the stage ({replay_windows:,} windows) "
            f"plus the sources' tokens budgets exceed train_tokens {budget_tokens:,}: lower one of them",
        )
    if rest and flexible:
        if temperature is None:
            weights = {s.name: 1.0 if s.weight is None else float(s.weight) for s in flexible}
            empty = "the weights of the sources without `tokens` add up to 0"
        else:
            weights = {s.name: float(s.tokens) ** (1.0 / temperature) for s in flexible}
            empty = "the sources without `tokens` have no tokens after cleaning"
        if not sum(weights.values()) > 0:
            raise RecipeError(config_file, "mixture", f"{empty}: nothing can fill {rest * seq_length:,} tokens")
        windows.update(split_budget(rest, weights))
    elif rest:  # every source is a replay source
        raise RecipeError(
            config_file,
            "replay_share",
            f"replay sources take only {replay_share} of the stage and no "
            f"other source takes the rest ({rest * seq_length:,} tokens): add a source or raise "
            "replay_share",
        )

    rows = []
    for s in sizes:
        rule = (
            "replay"
            if s.replay
            else "tokens"
            if s.tokens_requested is not None
            else "weight"
            if temperature is None
            else "temperature"
        )
        drawn = windows[s.name]
        if drawn and s.windows <= 0:
            key = {
                "tokens": _source_key(s.name, "tokens"),
                "weight": _source_key(s.name, "weight"),
                "temperature": f"mixture[{s.name}]",
                "replay": "replay_share",
            }[rule]
            raise RecipeError(
                config_file,
                key,
                f"source {s.name} is asked for {drawn * seq_length:,} tokens but has "
                f"no full window of {seq_length} tokens after cleaning ({s.tokens:,} tokens available): "
                "remove it or give it data",
            )
        epochs = drawn / s.windows if s.windows else 0.0
        allowed = max_epochs if s.max_epochs is None else s.max_epochs
        if epochs > allowed + EPOCH_SLACK:
            change = {
                "tokens": f"lower mixture[{s.name}].tokens",
                "weight": f"lower mixture[{s.name}].weight",
                "temperature": "raise temperature",
                "replay": "lower replay_share",
            }[rule]
            raise RecipeError(
                config_file,
                _source_key(s.name, "max_epochs"),
                f"source {s.name} needs {epochs:.2f} "
                f"epochs of its {s.tokens:,} available tokens ({s.windows:,} windows of {seq_length}) "
                f"but at most {allowed:g} are allowed: {change} or train_tokens, or raise "
                f"mixture[{s.name}].max_epochs (or the stage's max_epochs)",
            )
        rows.append(
            MixRow(
                name=s.name,
                rule=rule,
                share=drawn / total,
                windows=drawn,
                tokens=drawn * seq_length,
                epochs=epochs,
                available_tokens=s.tokens,
                available_windows=s.windows,
            )
        )
    logger.info("mixture resolved: %d windows of %d tokens over %d sources", total, seq_length, len(rows))
    return rows


def mixture_table(rows: list[MixRow]) -> str:
    """The table as text: source, rule, share %, tokens, epochs, available tokens."""
    header = ("source", "rule", "share %", "tokens", "epochs", "available")
    body = [
        (r.name, r.rule, f"{100 * r.share:.2f}", f"{r.tokens:,}", f"{r.epochs:.2f}", f"{r.available_tokens:,}")
        for r in rows
    ]
    total_tokens = sum(r.tokens for r in rows)
    total_share = sum(r.share for r in rows)
    body.append(
        (
            "total",
            "",
            f"{100 * total_share:.2f}",
            f"{total_tokens:,}",
            "",
            f"{sum(r.available_tokens for r in rows):,}",
        )
    )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line):  # names left, numbers right
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, body[:-1]), rule, fmt(body[-1])])
