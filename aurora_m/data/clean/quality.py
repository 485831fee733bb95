"""Prose quality heuristics (Gopher, C4, FineWeb) with per-language settings, and the paper's CAT filter.

Each heuristic is one datatrove step that holds one configured datatrove filter per language and picks
it from ``doc.metadata["language"]`` (set by the reader, updated by ``LanguageId`` on re-routing), so
datatrove's stats show one step per heuristic with its ``dropped_<reason>`` counts, plus
``language_<lang>_dropped`` counts for the per-language report.

Why the settings differ per language (measured on the tiny corpus' good documents, which are single
paragraphs of 4-6 sentences):
- words come from ``words.word_tokenizer`` (regex; Japanese words are runs of one script, ~2 chars);
- Gopher's stop words are small per-language lists; the English one is Gopher's own;
- Finnish packs more into a word (agglutination): fewer words per document, longer words, so each
  comma and full stop (a token of its own, as with spaCy) is a larger share of the "words";
- Japanese 、。「」 are tokens too, between ~2-character words: Gopher's "80% of words have a letter"
  is 70% there (good ja paragraphs sit at 0.81, fi at 0.81, en/hi/vi at 0.85 or more);
- Hindi and Vietnamese have short words (Vietnamese writes one syllable per word), Japanese script runs
  are ~2 characters: lower minimum mean word length;
- lines end in 。！？」 (ja) and । ॥ (hi) as well as . ? !, for C4's and FineWeb's punctuation rules;
- C4's "at least 5 sentences" is 3 here: a good paragraph of 4 sentences is not boilerplate;
- a Japanese line of 12 characters carries what ~30 Latin characters do (FineWeb's short lines).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import regex
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, POLICY_SUBSTRINGS
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_sentences

from aurora_m.data.clean.words import LANGUAGES, word_tokenizer

logger = logging.getLogger(__name__)

FILTER_NAMES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
FALLBACK = "default"  # settings for a language outside LANGUAGES (generic spaced-language rules)

STOP_WORDS = {
    "en": ["the", "be", "to", "of", "and", "that", "have", "with"],  # Gopher's list, as datatrove's default
    "fi": [
        "ja",
        "on",
        "ei",
        "se",
        "sen",
        "ne",
        "että",
        "oli",
        "ole",
        "ovat",
        "kun",
        "kuin",
        "mutta",
        "niin",
        "myös",
        "tai",
        "joka",
        "hän",
        "jos",
        "jo",
        "voi",
        "vain",
        "koska",
        "vaikka",
    ],
    "hi": ["है", "हैं", "के", "की", "का", "में", "और", "को", "से", "पर", "कि", "भी", "था", "यह", "वह"],
    "ja": ["の", "に", "は", "を", "が", "で", "と", "も", "た", "て", "へ", "や", "な"],
    "vi": ["và", "của", "là", "có", "được", "những", "cho", "không", "một", "các", "trong", "với", "này", "đã"],
}
STOP_WORDS[FALLBACK] = STOP_WORDS["en"]

_QUOTES = ('"', "'", "”", "’", "»")  # C4 keeps lines that end in a quote
END_PUNCTUATION = {
    FALLBACK: (".", "?", "!", *_QUOTES),
    "hi": (".", "?", "!", "।", "॥", *_QUOTES),
    "ja": ("。", "！", "？", ".", "?", "!", "」", "』", *_QUOTES),
}
# FineWeb counts lines that end in any terminal mark (datatrove's set has 。 and । already) or a quote
_FINEWEB_STOP_CHARS = tuple(sorted(TERMINAL_PUNCTUATION)) + _QUOTES + ("」", "』")


class C4Quality(C4QualityFilter):
    """datatrove's C4 filter with the line-ending marks as a parameter and per-language word splitting.

    Upstream hard-codes ``. ? ! " '`` as line endings and counts words with ``str.split`` (a Japanese
    line is then one word and always "too short"). The rules and their order are otherwise upstream's.
    """

    def __init__(self, end_punctuation: tuple[str, ...] = END_PUNCTUATION[FALLBACK], **kwargs):
        super().__init__(**kwargs)
        self.end_punctuation = tuple(end_punctuation)
        self._spaced = not (hasattr(self.language, "language") and self.language.language == "ja")

    def _line_words(self, line: str) -> list[str]:
        if self._spaced:
            return line.split()
        return [w for w in self.language.word_tokenize(line) if any(ch not in PUNCTUATION_SET for ch in w)]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lines = doc.text.splitlines() if self.split_paragraph else split_into_sentences(doc.text, self.language)
        num_sentences = 0
        kept_lines = []
        for line in lines:
            line = line.strip()
            words = self._line_words(line)
            self.stat_update("line-total")
            if self.max_word_length != -1 and any(len(word) > self.max_word_length for word in words):
                self.stat_update("line-filter-too_long_word")
                continue
            if self.remove_citations:
                line = CITATION_REGEX.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(self.end_punctuation) or line.endswith(ELLIPSIS)):
                self.stat_update("line-filter-no_terminal_punc")
                continue
            if len(words) < self.min_words_per_line:
                self.stat_update("line-filter-too_few_words")
                continue
            line_l = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in line_l:
                return False, "lorem_ipsum"
            if self.filter_javascript and "javascript" in line_l:
                self.stat_update("line-filter-javascript")
                continue
            if self.filter_curly_bracket and "{" in line:
                return False, "curly_bracket"
            if self.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
                self.stat_update("line-filter-policy")
                continue
            if self.min_num_sentences != -1:
                num_sentences += len(split_into_sentences(line, self.language)) if self.split_paragraph else 1
            kept_lines.append(line)
            self.stat_update("line-kept")
        if num_sentences < self.min_num_sentences:
            return False, "too_few_sentences"
        doc.text = ("\n" if self.split_paragraph else " ").join(kept_lines).strip()
        return True


_CLASSES = {
    "gopher_quality": GopherQualityFilter,
    "gopher_repetition": GopherRepetitionFilter,
    "c4": C4Quality,
    "fineweb": FineWebQualityFilter,
}

# per-language keyword arguments on top of the datatrove defaults; FALLBACK applies to every language
_SETTINGS: dict[str, dict[str, dict]] = {
    "gopher_quality": {
        FALLBACK: {},
        "fi": {"min_doc_words": 35, "max_avg_word_length": 12, "max_non_alpha_words_ratio": 0.75},
        "hi": {"min_avg_word_length": 2},
        "ja": {"min_avg_word_length": 1, "max_avg_word_length": 8, "max_non_alpha_words_ratio": 0.7},
        "vi": {"min_avg_word_length": 2},
    },
    "gopher_repetition": {FALLBACK: {}},
    "c4": {FALLBACK: {"min_num_sentences": 3}},
    "fineweb": {FALLBACK: {"stop_chars": _FINEWEB_STOP_CHARS}, "ja": {"short_line_length": 12}},
}


def _allowed_keys(name: str) -> set[str]:
    cls = _CLASSES[name]
    keys = set()
    for klass in (cls, *cls.__mro__[1:]):
        if klass is BaseFilter:
            break
        keys |= set(inspect.signature(klass.__init__).parameters)
    return keys - {"self", "args", "kwargs", "exclusion_writer", "language"}


def language_settings(name: str, language: str, overrides: dict | None = None) -> dict:
    """The keyword arguments heuristic ``name`` gets for ``language`` (defaults, then ``overrides``)."""
    table = _SETTINGS[name]
    kwargs = dict(table[FALLBACK])
    kwargs.update(table.get(language, {}))
    if name == "gopher_quality":
        kwargs["stop_words"] = STOP_WORDS.get(language, STOP_WORDS[FALLBACK])
    elif name == "c4":
        kwargs["end_punctuation"] = END_PUNCTUATION.get(language, END_PUNCTUATION[FALLBACK])
    kwargs.update(overrides or {})
    return kwargs


class PerLanguageFilter(BaseFilter):
    """One heuristic, configured per language; dispatches on ``doc.metadata["language"]``."""

    def __init__(self, name: str, overrides: dict | None = None, exclusion_writer=None):
        cls = _CLASSES[name]
        self.name = cls.name  # read by PipelineStep.__init__ to name this step's stats
        super().__init__(exclusion_writer)
        self.filter_name = name
        self.by_language = {
            language: cls(language=word_tokenizer(language), **language_settings(name, language, overrides))
            for language in (*LANGUAGES, FALLBACK)
        }
        for inner in self.by_language.values():
            inner.stats = self.stats  # the inner filters' line counters (C4) land in this step's stats

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get("language")
        inner = self.by_language.get(language) or self.by_language[FALLBACK]
        result = inner.filter(doc)
        if result is not True:
            self.stat_update(f"language_{language}_dropped")
        return result


def quality_filters(
    names: list[str],
    overrides: dict[str, dict] | None = None,
    exclusion_writer_for: Callable[[str], object] | None = None,
) -> list[BaseFilter]:
    """One datatrove filter per name (in the order given), each with per-language settings.

    ``overrides`` maps a filter name to keyword arguments that replace the defaults for every language,
    e.g. ``{"gopher_quality": {"min_doc_words": 30}}``; ``exclusion_writer_for(name)`` gives the
    datatrove writer that keeps what that filter removes (or None). Unknown names or keys: ValueError.
    """
    overrides = dict(overrides or {})
    unknown = [n for n in (*names, *overrides) if n not in _CLASSES]
    if unknown:
        raise ValueError(
            f"unknown quality filter(s) {', '.join(map(repr, dict.fromkeys(unknown)))}; "
            f"known: {', '.join(FILTER_NAMES)}"
        )
    for name, kwargs in overrides.items():
        bad = sorted(set(kwargs) - _allowed_keys(name))
        if bad:
            raise ValueError(
                f"unknown setting(s) for quality filter {name!r}: {', '.join(bad)}; "
                f"known: {', '.join(sorted(_allowed_keys(name)))}"
            )
    return [
        PerLanguageFilter(name, overrides.get(name), exclusion_writer_for(name) if exclusion_writer_for else None)
        for name in names
    ]


# digits (any script), punctuation and symbols; whitespace is left out of the denominator
_SYMBOL_OR_DIGIT = regex.compile(r"[\p{N}\p{P}\p{S}]+")
_WHITESPACE = regex.compile(r"\s+")


def symbol_digit_ratio(text: str) -> float:
    """Share of the non-space characters of ``text`` that are digits, punctuation or symbols."""
    non_space = len(text) - sum(len(m) for m in _WHITESPACE.findall(text))
    if non_space == 0:
        return 0.0
    return sum(len(m) for m in _SYMBOL_OR_DIGIT.findall(text)) / non_space


class SymbolDigitRatio(BaseFilter):
    """The paper's CAT filter: drop text whose share of digits and symbols exceeds ``max_ratio``.

    The paper (section on CAT data) only says "text with many symbols or numbers removed"; the share is
    over non-space characters, punctuation counted as symbols. Good prose in the tiny corpus sits at
    <= 0.05 (en/fi/hi/vi) and <= 0.11 (ja, whose 、。「」 are full characters); code sits far higher, so
    this filter is for prose.
    """

    name = "🔢 Symbol/digit ratio"

    def __init__(self, max_ratio: float, exclusion_writer=None):
        super().__init__(exclusion_writer)
        if not 0.0 < max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
        self.max_ratio = max_ratio

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if symbol_digit_ratio(doc.text) > self.max_ratio:
            self.stat_update(f"language_{doc.metadata.get('language')}_dropped")
            return False, "symbol_digit_ratio"
        return True
