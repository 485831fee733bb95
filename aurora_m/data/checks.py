"""The data keys of a training stage, checked before any document is read (named in the kinds table)."""

from __future__ import annotations

import logging
import math

from ..errors import RecipeError
from ..languages import CODE, is_language, language_hint
from ..overrides import check_choice, check_range, number

logger = logging.getLogger(__name__)


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
        if not is_language(lang) or lang == CODE:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected {language_hint()} other than code")
        if not 0 <= number(score) <= 1:
            raise RecipeError(file, f"language_id_min_score.{lang}", f"expected a score in [0, 1], got {score!r}")
    any_rank = config.get("language_id_any_rank") or []
    if not isinstance(any_rank, list):
        raise RecipeError(file, "language_id_any_rank", f"expected a list of languages, got {any_rank!r}")
    for lang in any_rank:
        if not is_language(lang) or lang == CODE:
            raise RecipeError(
                file, "language_id_any_rank", f"expected {language_hint()} other than code, got {lang!r}"
            )
    _check_quality(file, config)
    _check_language_settings(file, config)
    _check_shares(stage)
    for note in stage_language_notes(config):
        logger.warning("%s: %s", file, note)


def prose_languages(config: dict) -> list[str]:
    """The languages of a mixture's free-text sources (code aside), in the mixture's order."""
    from ..source_formats import FORMATS

    out = []
    for raw in config.get("mixture") or []:
        if not isinstance(raw, dict) or not FORMATS.get(raw.get("format", "text"), FORMATS["text"]).free_text:
            continue
        lang = raw.get("language") or (raw.get("name") if is_language(raw.get("name")) else None)
        if lang and lang != CODE and lang not in out:
            out.append(lang)
    return out


def stage_language_notes(config: dict) -> list[str]:
    """What the project has no setting for, per language of the stage: one line each (validate, report)."""
    from .clean import FILTER_NAMES, language_notes

    return language_notes(
        prose_languages(config),
        toxicity=config.get("toxicity_filter", True),
        quality_filters=tuple(config.get("quality_filters", FILTER_NAMES)),
    )


def _check_language_settings(file, config: dict) -> None:
    """``language_settings: {ko: {gopher_quality: {...}}}``: a language of the mixture, filters datatrove knows."""
    from .clean.quality import check_settings

    settings = config.get("language_settings") or {}
    if not isinstance(settings, dict):
        raise RecipeError(file, "language_settings", "expected a mapping of language -> {filter: {setting: value}}")
    languages = prose_languages(config)
    for lang, by_filter in settings.items():
        where = f"language_settings.{lang}"
        if lang not in languages:
            raise RecipeError(
                file, where, f"expected a prose language of this stage's mixture ({', '.join(languages)})"
            )
        if not isinstance(by_filter, dict):
            raise RecipeError(file, where, "expected a mapping of filter name -> {setting: value}")
        try:
            check_settings(by_filter)
        except ValueError as err:
            raise RecipeError(file, where, str(err)) from None
        for name, kwargs in by_filter.items():
            for k, v in (kwargs or {}).items():
                if not (v is None or isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool)):
                    raise RecipeError(file, f"{where}.{name}.{k}", f"expected a number or a list, got {v!r}")


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
