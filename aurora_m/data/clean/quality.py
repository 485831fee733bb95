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

from aurora_m.data.clean.languages import script_of, splitter_of, stop_words
from aurora_m.data.clean.words import word_tokenizer

logger = logging.getLogger(__name__)

FILTER_NAMES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
FALLBACK = "default"  # the settings every language starts from (datatrove's defaults, a few loosened)


_QUOTES = ('"', "'", "”", "’", "»")  # C4 keeps lines that end in a quote
END_PUNCTUATION = {
    FALLBACK: (".", "?", "!", *_QUOTES),
    "hi": (".", "?", "!", "।", "॥", *_QUOTES),
    "ja": ("。", "！", "？", ".", "?", "!", "」", "』", *_QUOTES),
    "Arab": (".", "?", "!", "؟", "۔", *_QUOTES),  # Arabic question mark, Urdu full stop
    "Armn": (".", "?", "!", "։", *_QUOTES),
    "Ethi": (".", "?", "!", "።", "፧", *_QUOTES),
}
for _script, _lang in (("Deva", "hi"), ("Beng", "hi"), ("Jpan", "ja"), ("Hani", "ja")):
    END_PUNCTUATION[_script] = END_PUNCTUATION[_lang]
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
        self._spaced = splitter_of(getattr(self.language, "language", None) or "") not in ("ja", "han")

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
        # by script, for the languages not tuned by name: Devanagari as Hindi, Japanese as ja; Chinese words
        # are single characters; a Korean eojeol is a word with its particles: 2.5-3.1 characters on average, 46-61
        # of them in a 5-sentence paragraph, stop words seldom bare (1-6 of stopwords-iso's per paragraph)
        "Deva": {"min_avg_word_length": 2},
        "Jpan": {"min_avg_word_length": 1, "max_avg_word_length": 8, "max_non_alpha_words_ratio": 0.7},
        "Hani": {"min_avg_word_length": 1, "max_avg_word_length": 3, "max_non_alpha_words_ratio": 0.7},
        "Hang": {"min_avg_word_length": 1.5, "min_doc_words": 30, "min_stop_words": 1},
    },
    "gopher_repetition": {FALLBACK: {}},
    "c4": {FALLBACK: {"min_num_sentences": 3}},
    "fineweb": {
        FALLBACK: {"stop_chars": _FINEWEB_STOP_CHARS},
        "ja": {"short_line_length": 12},
        "Jpan": {"short_line_length": 12},
        "Hani": {"short_line_length": 12},
    },
}


def _allowed_keys(name: str) -> set[str]:
    cls = _CLASSES[name]
    keys = set()
    for klass in (cls, *cls.__mro__[1:]):
        if klass is BaseFilter:
            break
        keys |= set(inspect.signature(klass.__init__).parameters)
    return keys - {"self", "args", "kwargs", "exclusion_writer", "language"}


def _by_name_or_script(table: dict, language: str):
    """A language's own entry, else its script's (Korean: Hang), else the default."""
    if language in table:
        return table[language]
    return table.get(script_of(language) or "", table.get(FALLBACK))


def language_settings(
    name: str, language: str, overrides: dict | None = None, language_overrides: dict | None = None
) -> dict:
    """The keyword arguments heuristic ``name`` gets for ``language``: the defaults, its language's (or script's)
    settings, then ``overrides`` (every language), then ``language_overrides`` (``{lang: {name: {...}}}``)."""
    table = _SETTINGS[name]
    kwargs = dict(table[FALLBACK])
    if language in table or script_of(language) in table:
        kwargs.update(_by_name_or_script(table, language))
    if name == "gopher_quality":
        words = stop_words(language)
        kwargs["stop_words"] = list(words[0]) if words else []
        if not words:
            kwargs["min_stop_words"] = None  # no list for this language: the rule is off (said at validate)
    elif name == "c4":
        kwargs["end_punctuation"] = _by_name_or_script(END_PUNCTUATION, language)
    kwargs.update(overrides or {})
    kwargs.update(((language_overrides or {}).get(language) or {}).get(name) or {})
    return kwargs


class PerLanguageFilter(BaseFilter):
    """One heuristic, configured per language; dispatches on ``doc.metadata["language"]``."""

    def __init__(
        self,
        name: str,
        overrides: dict | None = None,
        exclusion_writer=None,
        language_overrides: dict | None = None,
    ):
        cls = _CLASSES[name]
        self.name = cls.name  # read by PipelineStep.__init__ to name this step's stats
        super().__init__(exclusion_writer)
        self.filter_name = name
        self.overrides = dict(overrides or {})
        self.language_overrides = dict(language_overrides or {})
        self.by_language: dict[str, BaseFilter | None] = {}

    def inner(self, language: str) -> BaseFilter | None:
        """The configured datatrove filter for ``language``, built on first use; None where the language has no
        word splitter (Thai...): word counts would be wrong, so the heuristic passes its documents through."""
        if language not in self.by_language:
            inner = None
            if splitter_of(language) is not None:
                kwargs = language_settings(self.filter_name, language, self.overrides, self.language_overrides)
                inner = _CLASSES[self.filter_name](language=word_tokenizer(language), **kwargs)
                inner.stats = self.stats  # the inner filters' line counters (C4) land in this step's stats
            self.by_language[language] = inner
        return self.by_language[language]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get("language")
        inner = self.inner(language) if language else None
        if inner is None:
            self.stat_update(f"language_{language}_unfiltered")
            return True
        result = inner.filter(doc)
        if result is not True:
            self.stat_update(f"language_{language}_dropped")
        return result


def quality_filters(
    names: list[str],
    overrides: dict[str, dict] | None = None,
    exclusion_writer_for: Callable[[str], object] | None = None,
    language_overrides: dict[str, dict] | None = None,
) -> list[BaseFilter]:
    """One datatrove filter per name (in the order given), each with per-language settings.

    ``overrides`` maps a filter name to keyword arguments that replace the defaults for every language,
    e.g. ``{"gopher_quality": {"min_doc_words": 30}}``; ``language_overrides`` does the same for one language,
    ``{"ko": {"gopher_quality": {...}}}``; ``exclusion_writer_for(name)`` gives the datatrove writer that keeps
    what that filter removes (or None). Unknown names or keys: ValueError.
    """
    overrides = dict(overrides or {})
    for language, by_filter in (language_overrides or {}).items():
        check_settings({k: v for k, v in (by_filter or {}).items() if k in _CLASSES}, f"{language}: ")
    check_settings(overrides)
    unknown = [n for n in names if n not in _CLASSES]
    if unknown:
        raise ValueError(
            f"unknown quality filter(s) {', '.join(map(repr, dict.fromkeys(unknown)))}; "
            f"known: {', '.join(FILTER_NAMES)}"
        )
    return [
        PerLanguageFilter(
            name,
            overrides.get(name),
            exclusion_writer_for(name) if exclusion_writer_for else None,
            language_overrides,
        )
        for name in names
    ]


def check_settings(overrides: dict, where: str = "") -> None:
    """Filter names and their keyword arguments, known to datatrove's filters, or ValueError."""
    unknown = [n for n in overrides if n not in _CLASSES]
    if unknown:
        raise ValueError(
            f"{where}unknown quality filter(s) {', '.join(map(repr, dict.fromkeys(unknown)))}; "
            f"known: {', '.join(FILTER_NAMES)}"
        )
    for name, kwargs in overrides.items():
        bad = sorted(set(kwargs or {}) - _allowed_keys(name))
        if bad:
            raise ValueError(
                f"{where}unknown setting(s) for quality filter {name!r}: {', '.join(bad)}; "
                f"known: {', '.join(sorted(_allowed_keys(name)))}"
            )


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
