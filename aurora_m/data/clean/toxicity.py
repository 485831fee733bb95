"""Toxic-word filter: per-language word lists, the project's own in ``wordlists/<lang>.txt`` (the paper's five),
else LDNOOBW's (``languages.py`` says where each comes from); a language with neither has no list, said at
validate and in the filter report: another language's list is never used in its place."""

from __future__ import annotations

import functools
import logging
import unicodedata
from pathlib import Path

import regex
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from aurora_m.data.clean.languages import UNSPACED_SCRIPTS, WORDLIST_DIR, ldnoobw_terms, script_of

logger = logging.getLogger(__name__)

# no spaces between words: a term matches anywhere
SUBSTRING_SCRIPTS = frozenset({"Jpan", "Hani", *UNSPACED_SCRIPTS})
# Korean writes particles onto the word (씨발놈아): a term matches at the start of a word, any ending after it
PREFIX_SCRIPTS = frozenset({"Hang"})


def load_wordlist(path: Path) -> list[str]:
    """Terms of one list: one per line, blank lines and ``#`` comments skipped, NFC-normalised."""
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        term = line.strip()
        if term and not term.startswith("#"):
            terms.append(unicodedata.normalize("NFC", term))
    return terms


@functools.cache
def _pattern(wordlist_dir: str, language: str) -> regex.Pattern | None:
    """One alternation per language, compiled once per process (the filter pickles without it)."""
    path = Path(wordlist_dir) / f"{language}.txt"
    if path.is_file():
        terms = load_wordlist(path)
    else:
        terms = [unicodedata.normalize("NFC", t) for t in ldnoobw_terms(language)]
    if not terms:
        return None  # said once, at validate and in the filter report (languages.language_notes)
    # longest first so "motherfucker" wins over "fucker"; spaces in a term match any whitespace
    alternation = "|".join(regex.escape(t).replace(r"\ ", r"\s+") for t in sorted(set(terms), key=len, reverse=True))
    script = script_of(language)
    if script in SUBSTRING_SCRIPTS:
        return regex.compile(alternation, regex.IGNORECASE)
    # a word boundary that also holds for Devanagari vowel signs and Vietnamese tone marks (\p{M})
    boundary = r"[\p{L}\p{M}\p{N}]"
    if script in PREFIX_SCRIPTS:
        return regex.compile(rf"(?<!{boundary})(?:{alternation})", regex.IGNORECASE)
    return regex.compile(rf"(?<!{boundary})(?:{alternation})(?!{boundary})", regex.IGNORECASE)


class ToxicWords(BaseFilter):
    """Drops a document as soon as it has ``max_hits`` matches of its language's list ("toxic_words").

    ``max_hits=1`` is C4's rule (any listed word removes the page). Spaced languages match whole words;
    Japanese and Chinese match substrings, Korean word starts. The list is chosen by
    ``doc.metadata["language"]``; a document of a language with no list passes.
    """

    name = "☣️ Toxic words"

    def __init__(self, max_hits: int = 1, wordlist_dir: str | Path = WORDLIST_DIR, exclusion_writer=None):
        super().__init__(exclusion_writer)
        if max_hits < 1:
            raise ValueError(f"max_hits must be at least 1, got {max_hits}")
        self.max_hits = max_hits
        self.wordlist_dir = str(wordlist_dir)

    def hits(self, text: str, language: str) -> int:
        """Matches in ``text``, counted up to ``max_hits`` (no need to scan further)."""
        pattern = _pattern(self.wordlist_dir, language)
        if pattern is None:
            return 0
        if not unicodedata.is_normalized("NFC", text):  # the lists are NFC; web text is not always
            text = unicodedata.normalize("NFC", text)
        found = 0
        for _ in pattern.finditer(text):
            found += 1
            if found >= self.max_hits:
                break
        return found

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get("language") or ""
        if self.hits(doc.text, language) >= self.max_hits:
            self.stat_update(f"language_{language}_dropped")
            return False, "toxic_words"
        return True
