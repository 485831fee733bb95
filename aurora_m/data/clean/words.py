"""Regex word and sentence splitting for the corpus languages, in datatrove's ``WordTokenizer`` shape.

datatrove's own tokenizers for these languages are spaCy-based (Japanese needs sudachi dictionaries,
Vietnamese needs pyvi) and about ten times slower than one compiled regex; the quality heuristics only
need word counts, word lengths and sentence counts, which a regex gives well enough.

Words are runs of letters/marks/digits (with inner apostrophes and hyphens, and digit groups such as
``12.5`` or ``4,310``); each run of one punctuation or symbol character is a token of its own, as
spaCy does, so Gopher's "words with a letter" ratio sees punctuation. Japanese has no spaces: a word
is a run of one script (kanji / hiragana / katakana / latin letters and digits), which gives word counts and
mean word lengths that the thresholds in ``quality.py`` are tuned for.

Patterns live at module level (not on the instances) so tokenizers pickle as a language code when
datatrove ships filters to worker processes.
"""

from __future__ import annotations

import functools

import regex
from datatrove.utils.word_tokenizers import WordTokenizer

from aurora_m.data.clean.languages import script_of, splitter_of

_CJK_RUNS = r"\p{Han}+|\p{Hiragana}+|[\p{Katakana}ー・]+"  # one script per run; ー (Common) joins katakana
# letters, marks and digits of the spaced scripts (V1 set difference: CJK never glues onto a Latin word)
_ALNUM = r"[[\p{L}\p{M}\p{N}]--[\p{Han}\p{Hiragana}\p{Katakana}]]"
_PUNCT = r"([^\s\p{L}\p{M}\p{N}])\1*"  # a run of one repeated punctuation/symbol char ("...", "!!")
# CJK runs come first so that a mixed-script corpus (MinHash over all sources) still gets Japanese words
_SPACED_WORD = (
    rf"{_CJK_RUNS}"
    rf"|{_ALNUM}+(?:['’\-]{_ALNUM}+|(?<=\p{{N}})[.,:]\p{{N}}+)*"  # don't, well-known, 12.5, 4,310,000, 10:30
    rf"|{_PUNCT}"
)
_JA_WORD = (
    rf"{_CJK_RUNS}"
    # latin letters and digits stay together as in spaced text: H2O, iPhone15, 12.5, 4,310
    r"|[\p{Latin}\p{N}\p{M}]+(?:['’\-][\p{Latin}\p{N}]+|(?<=\p{N})[.,:]\p{N}+)*"
    r"|[\p{L}\p{M}]+"  # other scripts (Hangul, Cyrillic...) as plain runs
    rf"|{_PUNCT}"
)

_CLOSERS = "\"'”’»)」』）】"
# sentence ends: spaced languages need whitespace (or the end) after the mark, so 12.5 and e.g.
# stay whole; Japanese needs nothing after 。！？; a newline always ends a sentence
_TERMINALS = {"ja": "。！？!?．", "hi": "।॥.?!", "default": ".?!…"}


def _sentence_end(language: str) -> str:
    terminals = regex.escape(_TERMINALS.get(language, _TERMINALS["default"]))
    closers = regex.escape(_CLOSERS)
    follow = "" if language == "ja" else r"(?=\s|$)"
    return rf"[{terminals}]+[{closers}]*{follow}|\n+"


# Chinese (Han script without kana): no spaces and no segmenter here, so one Han character is one word
_HAN_WORD = rf"\p{{Han}}|{_JA_WORD.split('|', 3)[-1]}"
_WORD_PATTERNS = {
    "ja": regex.compile(_JA_WORD),
    "han": regex.compile(_HAN_WORD),
    "spaced": regex.compile(_SPACED_WORD, regex.V1),
}
_SENTENCE_PATTERNS = {lang: regex.compile(_sentence_end(lang)) for lang in ("ja", "hi", "default")}
# sentence marks by script: Devanagari (and Bengali) dandas, CJK full stops
_SCRIPT_TERMINALS = {"Deva": "hi", "Beng": "hi", "Jpan": "ja", "Hani": "ja"}


class RegexWordTokenizer(WordTokenizer):
    """Word/sentence splitting by one compiled regex per language (see the module docstring)."""

    def __init__(self, language: str):
        super().__init__(language)

    @property
    def _words(self) -> regex.Pattern:
        # a language with no splitter of its own (Thai...) is split as spaced text; the quality filters do not
        # ask it (languages.py), but MinHash over a mixed corpus still needs words
        return _WORD_PATTERNS[splitter_of(self.language) or "spaced"]

    @property
    def _sentence_ends(self) -> regex.Pattern:
        return _SENTENCE_PATTERNS[_SCRIPT_TERMINALS.get(script_of(self.language), "default")]

    def word_tokenize(self, text: str) -> list[str]:
        return [m.group(0) for m in self._words.finditer(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans = []
        start = 0
        for match in self._sentence_ends.finditer(text):
            end = match.end() if match.group(0)[0] != "\n" else match.start()
            _append_stripped(spans, text, start, end)
            start = match.end()
        _append_stripped(spans, text, start, len(text))
        return spans

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b] for a, b in self.span_tokenize(text)]

    def __reduce__(self):
        # rebuild through the cache so each worker process holds one tokenizer per language
        return word_tokenizer, (self.language,)


def _append_stripped(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


@functools.cache
def word_tokenizer(language: str) -> RegexWordTokenizer:
    """The tokenizer for ``language`` (en, fi, hi, ja, vi; any other code gets the spaced-language rules).

    One instance per language and process: datatrove caches tokenizers and split results by identity.
    """
    return RegexWordTokenizer(language)
