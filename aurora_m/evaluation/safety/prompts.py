"""The safety suite's prompts: red-team and benign look-alike instructions per language and harm category.

Sources are read with the project's loader (``read_source``), so the held-out split is the one training
used: ``{path: data/redteam.jsonl, format: instruction, holdout_fraction: 0.2, take: heldout}`` reads
exactly the red-team rows CAT and SFT never saw. ``format: instruction`` reads ``instruction_field``;
``format: text`` reads ``text_field`` (prompt-only sets). The category is ``category_field`` ("" when the
source has none: ``uncategorized``). The language is the source's declared ``language`` (or its name when
that is a language code), else each row's ``language`` column (codes, or English names such as "Hindi").

Rows in a language outside en/fi/hi/ja/vi are counted, not used. ``safety_max_prompts`` caps each
language, taking categories in turn so every category keeps prompts. Instruction texts are read only for
the prompts kept; a prompt seen twice in one language (two sources holding the same row) is used once.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from ...data.sources import load_rows, read_source
from ...errors import RecipeError
from ...languages import CODE, is_language
from ...source_spec import SourceSpec, source_specs

logger = logging.getLogger(__name__)

LANGUAGE_COLUMN = "language"
UNCATEGORIZED = "uncategorized"
LANGUAGE_NAMES = {"english": "en", "finnish": "fi", "suomi": "fi", "hindi": "hi", "japanese": "ja", "vietnamese": "vi"}


@dataclass(frozen=True)
class SafetyPrompt:
    instruction: str
    category: str
    language: str
    source: str


@dataclass
class PromptSet:
    prompts: list[SafetyPrompt]
    reports: list[dict]  # the loader's SourceReport per source
    other_languages: Counter = field(default_factory=Counter)  # rows in languages the suite does not measure
    capped: Counter = field(default_factory=Counter)  # language -> rows beyond safety_max_prompts
    duplicates: int = 0


def language_code(value) -> str | None:
    """``"hi"``, ``"Hindi"``, ``"en-US"`` -> a language the suite measures, or None."""
    text = str(value or "").strip().lower()
    text = LANGUAGE_NAMES.get(text, text).replace("_", "-").split("-")[0]
    return text if is_language(text) and text != CODE else None


def _column(docs, name: str) -> list:
    rows = docs.rows.tolist()
    return docs.table.select_columns([name])[rows][name] if rows else []


def _row_languages(spec: SourceSpec, docs, config_file, key: str, where: str) -> list:
    if spec.lang:
        return [spec.lang] * len(docs)
    table = load_rows(spec, str(config_file), key)  # the same cached table read_source split: same row numbers
    if LANGUAGE_COLUMN not in table.column_names:
        raise RecipeError(
            config_file,
            f"{where}.language",
            f"missing: declare the source's language (a LID-176 code: en, de, ko, ...) or give its rows "
            f"a '{LANGUAGE_COLUMN}' column (columns: {', '.join(table.column_names)})",
        )
    return table.select_columns([LANGUAGE_COLUMN])[docs.rows.tolist()][LANGUAGE_COLUMN]


def _stratified(items: list[tuple], cap: int | None) -> list[tuple]:
    """At most ``cap`` items (category at index 1), categories taken in turn; file order kept."""
    if cap is None or len(items) <= cap:
        return items
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_category[item[1]].append(i)
    picked: list[int] = []
    depth = 0
    while len(picked) < cap:
        for group in by_category.values():
            if depth < len(group) and len(picked) < cap:
                picked.append(group[depth])
        depth += 1
    return [items[i] for i in sorted(picked)]


def read_prompts(sources: list[dict], key: str, config_file, max_per_language: int | None = None) -> PromptSet:
    """The prompts of ``sources`` (the ``safety_sources`` or ``benign_sources`` list), in source and file order."""
    specs, docs_of, reports = [], [], []
    candidates: dict[str, list[tuple]] = defaultdict(list)  # language -> (source, category, row number)
    other = Counter()
    for spec in source_specs(sources, key, config_file):
        where = f"{key}[{spec.name}]"
        docs, report = read_source(spec, str(config_file), key)
        reports.append(asdict(report))
        categories = docs.categories()  # through the source's taxonomy, when it names one
        languages = _row_languages(spec, docs, config_file, key, where)
        for row, category, value in zip(docs.rows.tolist(), categories, languages):
            lang = language_code(value)
            if lang is None:
                other[str(value or "(none)")] += 1
                continue
            candidates[lang].append((len(specs), str(category or "").strip() or UNCATEGORIZED, row))
        specs.append(spec)
        docs_of.append(docs)
    if other:
        logger.warning(
            "%s: %d row(s) in languages the suite does not measure (%s): not used",
            key,
            sum(other.values()),
            ", ".join(f"{k} {v}" for k, v in other.most_common(5)),
        )
    capped = Counter()
    chosen: dict[int, list[tuple]] = defaultdict(list)  # source -> (language, category, row)
    for lang, items in candidates.items():
        kept = _stratified(items, max_per_language)
        capped[lang] = len(items) - len(kept)
        for source, category, row in kept:
            chosen[source].append((lang, category, row))
    prompts, seen, duplicates = [], set(), 0
    for source, items in sorted(chosen.items()):
        items.sort(key=lambda item: item[2])  # file order, whatever the language
        spec = specs[source]
        fmt = spec.source_format
        texts = [fmt.give("prompt", record) for record in docs_of[source].records([row for _, _, row in items])]
        for (lang, category, _), text in zip(items, texts):
            text = text.strip()
            if (lang, text) in seen:
                duplicates += 1
                continue
            seen.add((lang, text))
            prompts.append(SafetyPrompt(text, category, lang, spec.name))
    return PromptSet(prompts, reports, other, +capped, duplicates)
