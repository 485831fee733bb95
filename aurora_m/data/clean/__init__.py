"""Cleaning steps for the pretrain corpus, as datatrove pipeline steps (all picklable, models loaded lazily).

Order in a source's "clean" pipeline (the data step wires it; each filter takes ``exclusion_writer=``):

prose (any LID-176 language; what each language gets and where it comes from: ``languages.py``):
  1. ``LanguageId``            wrong_language / low_language_score (or re-route to another source)
  2. ``quality_filters([...])`` gopher_quality, gopher_repetition, c4, fineweb, per-language settings
  3. ``SymbolDigitRatio``      the paper's CAT filter (when the stage sets a ratio)
  4. ``ToxicWords``            per-language word lists (``wordlists/``, else LDNOOBW's)
  5. ``PiiAnonymizer``         emails, IPs, phone numbers -> <EMAIL>, <IP_ADDRESS>, <PHONE>
code:
  1. ``CodeQuality``           long lines, mean line length, alphanumeric fraction, generated files
  2. ``PiiAnonymizer``
  and at tokenization, ``FillInTheMiddle`` (StarCoder's FIM tokens) before the tokenizer.

``word_tokenizer(language)`` gives the regex word splitter the quality filters use.
"""

from aurora_m.data.clean.code import CodeQuality
from aurora_m.data.clean.fim import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, FillInTheMiddle
from aurora_m.data.clean.language_id import LanguageId
from aurora_m.data.clean.languages import DEFAULT_LID_FLOOR, language_notes, profile
from aurora_m.data.clean.pii import EMAIL, IP_ADDRESS, PHONE, PiiAnonymizer
from aurora_m.data.clean.quality import FILTER_NAMES, SymbolDigitRatio, quality_filters, symbol_digit_ratio
from aurora_m.data.clean.toxicity import ToxicWords
from aurora_m.data.clean.words import word_tokenizer
from aurora_m.languages import PAPER_LANGUAGES as LANGUAGES

__all__ = [
    "CodeQuality",
    "DEFAULT_LID_FLOOR",
    "EMAIL",
    "FILTER_NAMES",
    "FIM_MIDDLE",
    "FIM_PREFIX",
    "FIM_SUFFIX",
    "FillInTheMiddle",
    "IP_ADDRESS",
    "LANGUAGES",
    "LanguageId",
    "PHONE",
    "PiiAnonymizer",
    "SymbolDigitRatio",
    "ToxicWords",
    "language_notes",
    "profile",
    "quality_filters",
    "symbol_digit_ratio",
    "word_tokenizer",
]
