"""The data keys of a training stage, checked before any document is read (named in the kinds table)."""

from __future__ import annotations

import math

from ..errors import RecipeError
from ..overrides import check_choice, check_range, number
from ..source_spec import PROSE_LANGUAGES


def check_corpus_keys(stage) -> None:
    """A pretraining mixture's cleaning, mixing and executor keys."""
    file, config = stage.file, stage.config
    if "train_tokens" not in config:
        raise RecipeError(file, "train_tokens", "missing: the stage's token budget (a positive integer)")
    check_range(file, config, "max_symbol_digit_ratio", 0, 1, low_open=True)
    check_range(file, config, "fim_rate", 0, 1)
    check_range(file, config, "fim_spm_rate", 0, 1)
    check_range(file, config, "replay_share", 0, 1, high_open=True)
    check_range(file, config, "temperature", 0, math.inf, low_open=True, high_open=True)
    check_range(file, config, "mixture_seed", 0, 2**63)
    check_range(file, config, "heldout_blocks", 0, 2**31)
    check_choice(file, config, "mislabelled", ("drop", "reroute"))
    check_choice(file, config, "data_executor", ("local", "slurm"))
    for lang, score in (config.get("language_id_min_score") or {}).items():
        if lang not in PROSE_LANGUAGES:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected one of {', '.join(PROSE_LANGUAGES)}")
        if not 0 <= number(score) <= 1:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected a score in [0, 1], got {score!r}")
    _check_quality(file, config)
    _check_shares(stage)


def _check_quality(file, config: dict) -> None:
    from .clean import quality_filters

    overrides = config.get("quality_overrides") or {}
    try:
        quality_filters(list(config.get("quality_filters", ["gopher_quality"])), dict(overrides))
    except ValueError as err:
        key = "quality_overrides" if any(str(k) in str(err) for k in overrides) else "quality_filters"
        raise RecipeError(file, key, str(err)) from None
    for name, settings in overrides.items():
        for k, v in (settings or {}).items():
            if not (v is None or isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool)):
                raise RecipeError(file, f"quality_overrides.{name}.{k}", f"expected a number, got {v!r}")


def _check_shares(stage) -> None:
    """Replay sources take the replay share; a temperature replaces weights."""
    file, config = stage.file, stage.config
    sources = [s for s in config["mixture"] if isinstance(s, dict)]
    replay = [s for s in sources if s.get("replay")]
    for s in replay:
        if s.get("weight") is not None or s.get("tokens") is not None:
            raise RecipeError(
                file,
                f"mixture[{s.get('name')}]",
                "a replay source takes its share from replay_share (by natural size): no weight or tokens",
            )
    share = number(config.get("replay_share", 0) or 0)
    if replay and not share > 0:
        names = ", ".join(str(s.get("name")) for s in replay)
        raise RecipeError(
            file, "replay_share", f"a share above 0: sources {names} are marked replay: true and would get no tokens"
        )
    if share > 0 and not replay:
        raise RecipeError(*stage.origin("replay_share"), "a source marked replay: true to draw the replay share from")
    if config.get("temperature") is not None:
        for s in sources:
            if s.get("weight") is not None:
                raise RecipeError(
                    file,
                    f"mixture[{s.get('name')}].weight",
                    "no weight when the stage sets a temperature (shares come from natural sizes)",
                )


def check_training_data_keys(stage) -> None:
    """What every training stage's data step reads besides its sources: the helpfulness mix (SFT), the chat
    format, the leakage threshold."""
    from ..args import SFT_FORMATS

    file, config = stage.file, stage.config
    share = config.get("helpfulness_share")
    if share is not None and not 0 <= number(share) < 1:
        raise RecipeError(file, "helpfulness_share", f"expected 0 <= x < 1 (a share of the SFT rows), got {share!r}")
    if share is not None and number(share) > 0 and not config.get("helpful_sources"):
        raise RecipeError(
            file, "helpful_sources", "missing: helpfulness_share draws from these general instruction sources"
        )
    if "sft_format" in config and config["sft_format"] not in SFT_FORMATS:
        raise RecipeError(
            file, "sft_format", f"expected one of {', '.join(SFT_FORMATS)}, got {config['sft_format']!r}"
        )
    threshold = config.get("leakage_threshold")
    if threshold is not None and not 0 < number(threshold) <= 1:
        raise RecipeError(file, "leakage_threshold", f"expected 0 < x <= 1 (a Jaccard similarity), got {threshold!r}")
