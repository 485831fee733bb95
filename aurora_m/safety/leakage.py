"""Held-out test prompts in training text: an exact copy (normalised) anywhere in it, or a near duplicate.

A leak is either the prompt quoted inside a longer text (a web page, an SFT row), or a rewrite of similar length
(case, punctuation, spacing, one word changed or added): the character n-gram Jaccard similarity of the two
normalised strings at or above ``near_threshold``.

Scale: the index holds the test prompts only, never the corpus, so memory is proportional to the test set
(~8 KB a prompt of 12-20 words: ~40 MB for the red-team set's ~5,000), and one training text costs one pass
over its n-grams, with the set operations in C. ``benchmarks/leakage_throughput.py`` measures ~7 MB/s on one
core (5,000 prompts, en/fi/hi/ja/vi text), ~4x a bare ``prompt in text`` loop: ~60 core-hours for the
377B-token CAP corpus (~1.5 TB), spread over the data step's tasks.

How a text is checked without comparing it with every prompt:

- exact: each prompt is indexed under one of its n-grams (its rarest among the prompts, so few prompts share
  it); only prompts whose anchor occurs in the text are then searched for, with ``str.find``;
- near: Jaccard >= t needs at least ceil(t * |A|) shared n-grams with a prompt of |A| n-grams, so any
  |A| - ceil(t * |A|) + 1 of its n-grams must include a shared one (the prefix filter of set-similarity joins).
  Only those n-grams (again the rarest) are indexed; the text's n-grams probe them and the few candidates are
  verified exactly. A text whose n-gram count is above |A| / t for every prompt cannot be near and skips this.

Exact copies of a prompt must sit on word boundaries in scripts written with spaces ("how to make a gun" is not
inside "how to make a gunpowder cake"); scripts without spaces (Japanese, Chinese, Thai...) have none to check.
A prompt shorter than one n-gram (a word or two) is a leak only as a whole text: a two-word string inside a web
page is no evidence that the test set leaked.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regex

logger = logging.getLogger(__name__)

# scripts written without spaces between words: kana, CJK ideographs (and 々〆〇), Thai, Lao, Myanmar, Khmer
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003134f"
)
_UNSPACED_CHAR = regex.compile(f"[{_UNSPACED}]")
_SPACE_BY_UNSPACED = regex.compile(f"(?<=[{_UNSPACED}]) | (?=[{_UNSPACED}])")
# invisible format characters (zero-width spaces and joiners, soft hyphens) and apostrophes ("don't" = "dont")
_DELETED = regex.compile("[\\p{Cf}'\u2019\u02bc]+")
# punctuation and symbols separate words ("<p>how", "wifi/network", "gun—now")
_SEPARATORS = regex.compile(r"[\p{P}\p{S}]+")
_EPSILON = 1e-9  # float slack in threshold arithmetic: a bound may only err towards checking more


def normalize(text: str) -> str:
    """The form in which two copies of a prompt compare equal: NFKC, case-folded, punctuation and symbols
    removed, whitespace collapsed to single spaces, and no space left next to a character of a script written
    without them ("AK47 の作り方" = "AK47の作り方"). Letters, digits and combining marks (Devanagari vowel signs
    and virama, Vietnamese tones) are kept: they change the word."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SEPARATORS.sub(" ", _DELETED.sub("", text))
    return _SPACE_BY_UNSPACED.sub("", " ".join(text.split()))


@dataclass(frozen=True)
class Match:
    prompt_id: str
    kind: str  # "exact": the normalised prompt occurs inside the text; "near": n-gram Jaccard >= the threshold
    score: float  # 1.0 for an exact copy, else the Jaccard similarity


class LeakageIndex:
    """The test prompts, indexed so that a training text is checked against all of them in one pass."""

    def __init__(self, prompts: Sequence[tuple[str, str]], ngram: int = 5, near_threshold: float = 0.7):
        if ngram < 1:
            raise ValueError(f"ngram must be at least 1, got {ngram}")
        if not 0 < near_threshold <= 1:
            raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
        self.ngram, self.near_threshold = ngram, near_threshold
        self._ids: list[str] = []
        self._texts: list[str] = []  # normalised prompts
        self._grams: list[frozenset[bytes]] = []
        self._whole: dict[str, list[int]] = defaultdict(list)  # prompts shorter than one n-gram, by text
        empty, shared = 0, {}
        for prompt_id, text in prompts:
            norm = normalize(text)
            if not norm:
                empty += 1
                continue
            k = len(self._ids)
            self._ids.append(prompt_id)
            self._texts.append(norm)
            self._grams.append(frozenset(shared.setdefault(g, g) for g in self.ngrams(norm)))  # one copy each
            if not self._grams[k]:
                self._whole[norm].append(k)
        if empty:
            logger.warning("%d test prompt(s) are empty once punctuation is removed: they cannot leak", empty)
        self._anchors, self._prefixes = self._build_postings()
        self._anchor_keys = frozenset(self._anchors)
        self._prefix_keys = frozenset(self._prefixes)
        # a text with more distinct n-grams than this is no near duplicate of any prompt (Jaccard <= |A| / |B|)
        self._max_near_grams = max((math.floor(len(g) / near_threshold + _EPSILON) for g in self._grams), default=0)

    def __len__(self) -> int:
        return len(self._ids)

    def ngrams(self, norm: str) -> set[bytes]:
        """The character n-grams of a normalised text, as UTF-32 bytes: slicing bytes is about twice as fast as
        slicing a non-ASCII str (which scans every slice for its widest character), and this is the hot loop."""
        data, width = norm.encode("utf-32-le"), 4 * self.ngram
        return {data[i : i + width] for i in range(0, len(data) - width + 1, 4)}

    def _build_postings(self) -> tuple[dict[bytes, list[int]], dict[bytes, list[int]]]:
        """n-gram -> prompts, for the exact anchors and the near prefixes; the rarest n-grams of each prompt are
        chosen (fewest prompts share them), which keeps the candidates per text few."""
        df = Counter(g for grams in self._grams for g in grams)
        anchors: dict[bytes, list[int]] = defaultdict(list)
        prefixes: dict[bytes, list[int]] = defaultdict(list)
        for k, grams in enumerate(self._grams):
            if not grams:
                continue
            rarest = sorted(grams, key=lambda g: (df[g], g))
            anchors[rarest[0]].append(k)
            need = math.ceil(self.near_threshold * len(grams) - _EPSILON)  # shared n-grams a near text must have
            for g in rarest[: len(grams) - need + 1]:
                prefixes[g].append(k)
        return dict(anchors), dict(prefixes)

    def matches(self, text: str) -> list[Match]:
        """The test prompts ``text`` leaks, one match per prompt (exact before near), in index order."""
        norm = normalize(text)
        if not norm:
            return []
        found: dict[int, Match] = {k: self._match(k, "exact", 1.0) for k in self._whole.get(norm, ())}
        grams = self.ngrams(norm)
        for g in grams & self._anchor_keys:  # C-level: iterates the smaller set
            for k in self._anchors[g]:  # every n-gram of the prompt in the text first: a set test, no scan
                if k not in found and self._grams[k] <= grams and _occurs(norm, self._texts[k]):
                    found[k] = self._match(k, "exact", 1.0)
        if len(grams) <= self._max_near_grams:
            for k, score in self._near(grams, set(found)):
                found[k] = self._match(k, "near", score)
        return [found[k] for k in sorted(found)]

    def _near(self, grams: set[bytes], skip: set[int]) -> list[tuple[int, float]]:
        candidates = {k for g in grams & self._prefix_keys for k in self._prefixes[g]}
        t, size, near = self.near_threshold, len(grams), []
        for k in sorted(candidates - skip):
            other = len(self._grams[k])
            if not t * other - _EPSILON <= size <= other / t + _EPSILON:  # Jaccard <= min/max of the sizes
                continue
            shared = len(self._grams[k] & grams)
            score = shared / (other + size - shared)
            if score >= t - _EPSILON:
                near.append((k, score))
        return near

    def _match(self, k: int, kind: str, score: float) -> Match:
        return Match(self._ids[k], kind, score)


def _occurs(text: str, prompt: str) -> bool:
    """``prompt`` inside ``text`` with a word boundary on both sides (or a script without spaces there)."""
    start = text.find(prompt)
    while start >= 0:
        end = start + len(prompt)
        left = start == 0 or text[start - 1] == " " or _unspaced(text[start - 1]) or _unspaced(prompt[0])
        right = end == len(text) or text[end] == " " or _unspaced(text[end]) or _unspaced(prompt[-1])
        if left and right:
            return True
        start = text.find(prompt, start + 1)
    return False


def _unspaced(char: str) -> bool:
    return _UNSPACED_CHAR.match(char) is not None


def find_leaks(
    index: LeakageIndex, rows: Iterable[tuple[str, str]], limit: int | None = None
) -> list[tuple[str, Match]]:
    """(row id, match) for every row that leaks a test prompt, reading ``rows`` lazily; stops after ``limit``
    leaks (enough to name them in an error) without reading the rest."""
    leaks: list[tuple[str, Match]] = []
    for row_id, text in rows:
        for match in index.matches(text):
            leaks.append((row_id, match))
            if limit is not None and len(leaks) >= limit:
                return leaks
    return leaks
