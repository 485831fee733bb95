"""Read one source of a mixture into documents, counting everything that is set aside.

A source is read with ``datasets.load_dataset`` (local jsonl/json/parquet files, or a Hub dataset)
into its memory-mapped Arrow cache (:mod:`.source_tables`). One pass over the needed columns decides which
rows are kept (non-empty text, the right side of the held-out split, within ``max_docs``); the texts themselves
stay on disk until the mixer asks for the ones it draws (:meth:`SourceDocs.texts`).

When reading fails, the local file is diagnosed (:mod:`.bad_data_files`; only then: a healthy file is never
scanned twice) so the user gets one line naming the file, the line and what is wrong with it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import RecipeError
from ..source_formats import EMPTY, MISSING_FIELD, NOT_TEXT
from ..source_spec import SourceSpec, find_source_list
from .bad_data_files import _data_file_error, _diagnosed
from .source_tables import _load

logger = logging.getLogger(__name__)

HASH_SPACE = 2**64
SCAN_BATCH = 1000  # rows per batch when deciding which documents are kept
MAX_NOTED_ROWS = 5  # rows named in a report note; the count covers the rest
# a format's reason a row gives no record, as the scan counts it: None removed empty, False removed not text
USABLE = {None: True, EMPTY: None, MISSING_FIELD: None, NOT_TEXT: False}


@dataclass
class SourceReport:
    name: str
    docs_read: int = 0
    removed_empty: int = 0  # text missing, empty or blank
    removed_not_text: int = 0  # the text (or instruction/response) field held a number, list or mapping
    set_aside_by_split: int = 0  # the other side of the train/heldout hash split
    capped: int = 0  # beyond max_docs
    removed_unknown_category: int = 0  # a category the source's taxonomy does not know (or none at all)
    kept: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class SourceDocs:
    """The kept documents of one source: row numbers into the loaded (memory-mapped) table."""

    spec: SourceSpec
    table: object  # datasets.Dataset holding the needed columns (and the category column, if any) only
    rows: np.ndarray  # kept row numbers, in file order
    prompts_only: bool = False  # read for a list that needs prompts only: rows without an answer are kept

    def __len__(self) -> int:
        return len(self.rows)

    def records(self, file_rows) -> list:
        """The format's records of the kept rows numbered ``file_rows`` (row numbers in the file)."""
        fmt = self.spec.source_format
        batch = self.table[list(file_rows)]
        read = fmt.reader(self.prompts_only)
        return [read(self.spec, row)[0] for row in _rows_of(batch)]

    def give(self, product: str, positions=None) -> list:
        """What the format makes of the kept rows at ``positions`` (indices into the kept rows; all by default):
        ``text`` for training, ``chat``, ``prompt``, or a product a new format offers."""
        rows = self.rows if positions is None else self.rows[np.asarray(positions, dtype=np.int64)]
        fmt = self.spec.source_format
        return [fmt.give(product, record) for record in self.records(rows.tolist())]

    def texts(self, positions) -> list[str]:
        """The documents at ``positions`` (indices into the kept rows), as training text."""
        return self.give("text", positions)

    def categories(self) -> list[str]:
        """Each kept row's category: the taxonomy's id when the source names a taxonomy, else as written."""
        column = self.spec.category_field
        if column not in self.table.column_names:
            return [""] * len(self)
        raw = [str(c) for c in self.table.select_columns([column])[self.rows.tolist()][column]]
        taxonomy = source_taxonomy(self.spec)
        return [taxonomy.resolve(c) for c in raw] if taxonomy else raw

    def to_chats(self):
        """The kept rows in memory as chats: ``messages`` ([{role, content}], the template's roles) and
        ``category`` (SFT: rendered by the chat template, or split into prompt/completion)."""
        from datasets import Dataset

        if not self.spec.source_format.can_give("chat"):
            raise ValueError(f"source {self.spec.name}: format {self.spec.format!r} holds no chats")
        return Dataset.from_dict({"messages": self.give("chat"), "category": self.categories()})

    def to_dataset(self):
        """The kept documents in memory as training text, with their ``category``."""
        from datasets import Dataset

        return Dataset.from_dict({"text": self.texts(np.arange(len(self))), "category": self.categories()})


def _rows_of(batch: dict) -> list[dict]:
    """A column batch (``{column: [values]}``) as rows."""
    columns = list(batch)
    return [dict(zip(columns, values)) for values in zip(*batch.values())]


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def in_heldout(text: str, fraction: float) -> bool:
    """A document's side of the split depends on its text only, so CAT, SFT and eval always agree."""
    return fraction > 0 and text_hash(text) < fraction * HASH_SPACE


@dataclass(frozen=True)
class HeldOutRule:
    """Which side of a source's train/held-out split a document is on, given its training text.

    By default a stable hash of the text decides (any corpus size, no pass over the data). A stratified
    source (red-team sets) lists its held-out texts by hash instead, chosen per category so that each
    category's held-out share is ``fraction`` to within one row; it is small, so the list is too. Every
    reader of the source (CAT's datatrove pipeline, SFT, evaluation) derives the same rule from the same file.
    """

    fraction: float
    heldout_hashes: frozenset[int] | None = None

    def __call__(self, text: str) -> bool:
        if self.heldout_hashes is None:
            return in_heldout(text, self.fraction)
        return text_hash(text) in self.heldout_hashes


def source_taxonomy(spec: SourceSpec):
    """The harm-category taxonomy a source's categories are read through, or None."""
    if not spec.taxonomy:
        return None

    return _taxonomy(None if spec.taxonomy == BUILTIN_TAXONOMY else spec.taxonomy)


BUILTIN_TAXONOMY = "aurora-m"


@functools.lru_cache(maxsize=8)
def _taxonomy(path: str | None):
    from ..safety.taxonomy import Taxonomy

    return Taxonomy.load(path)


def heldout_rule(spec: SourceSpec, config_file: str, key: str) -> HeldOutRule:
    """The split rule of one source (reads a stratified source once to choose its held-out rows)."""
    if not spec.stratify or spec.holdout_fraction <= 0:
        return HeldOutRule(spec.holdout_fraction)
    from dataclasses import replace

    whole = replace(spec, holdout_fraction=0.0, take="train", max_docs=None, stratify=False)
    docs, _ = read_source(whole, config_file, key, log_notes=False)  # the stage's own read reports its rows
    return stratified_rule(docs, spec.holdout_fraction)


def stratified_rule(docs: SourceDocs, fraction: float) -> HeldOutRule:
    from ..safety.split import stratified_split

    instructions = docs.give("prompt")
    texts = docs.give("text")
    is_test = stratified_split(instructions, docs.categories(), fraction)
    return HeldOutRule(fraction, frozenset(text_hash(t) for t, test in zip(texts, is_test) if test))


# ----------------------------------------------------------------------------- reading a source


def read_source(
    spec: SourceSpec, config_file: str, key: str, *, prompt_completion: bool = False, log_notes: bool = True
) -> tuple[SourceDocs, SourceReport]:
    """The kept documents of one source (texts left on disk) and a report of what was set aside.

    ``config_file``/``key`` name where the source was declared (``key[name]``), for errors. ``log_notes``:
    say the report's notes in the log (off for a read whose rows are read, and reported, again).
    """
    where = f"{key}[{spec.name}]"
    ds = _load(spec, config_file, where)
    fmt = spec.source_format
    prompts_only = find_source_list(key).prompts_only  # eval prompts, the leakage check: no answer needed
    columns = fmt.columns_for(spec, prompts_only)
    if spec.taxonomy or spec.stratify:  # red-team sets: every row must name its harm category
        columns = {**columns, "category_field": [spec.category_field]}
    for field_key, names in columns.items():
        for column in names:
            if column not in ds.column_names:
                raise RecipeError(
                    config_file,
                    f"{where}.{field_key}",
                    f"column {column!r} not in {spec.origin} (columns: {', '.join(ds.column_names)})",
                )
    if prompt_completion and not fmt.can_give("chat"):
        raise RecipeError(config_file, f"{where}.format", f"SFT sources need a chat: format {spec.format!r} has none")
    rule = heldout_rule(spec, config_file, key)
    needed = list(dict.fromkeys(c for k, names in columns.items() if k != "category_field" for c in names))
    if prompts_only:  # an answer column still read where the file has one: the hash split hashes it too
        needed += [
            c for names in fmt.columns(spec).values() for c in names if c in ds.column_names and c not in needed
        ]
    if len(ds) == 0:
        if spec.path:
            raise _data_file_error(spec, config_file, where, None, "empty data file (no rows)")
        raise RecipeError(config_file, f"{where}.dataset", f"{spec.dataset} has no rows in split {spec.split!r}")
    has_category = spec.category_field in ds.column_names and spec.category_field not in needed
    # the category column is scanned too, so that bad bytes in it are found here rather than later
    table = ds.select_columns(needed + ([spec.category_field] if has_category else []))
    report = SourceReport(name=spec.name, docs_read=len(ds))
    try:
        rows, not_text = _scan(table, spec, report, rule, log_notes, prompts_only)
    except UnicodeDecodeError as err:  # Arrow keeps invalid bytes: they fail only once decoded, here
        error = _diagnosed(spec, config_file, where) if spec.path else None
        if error is None:
            raise RecipeError(
                config_file, f"{where}.{'path' if spec.path else 'dataset'}", f"text is not UTF-8 ({err})"
            ) from err
        raise error from err
    if not_text:
        what = f"is not {fmt.shape(spec)}" if fmt.shape else "is not a string"
        note = f"{report.removed_not_text} row(s) removed whose {'/'.join(needed)} {what} (rows {_shown(not_text)})"
        report.notes.append(note)
        if log_notes:
            logger.warning("%s: %s: %s", spec.path or spec.dataset, where, note)
    if report.kept == 0:
        raise RecipeError(config_file, where, f"no documents left after splitting/filtering ({report.docs_read} read)")
    return SourceDocs(spec=spec, table=table, rows=rows, prompts_only=prompts_only), report


def _scan(
    table, spec: SourceSpec, report: SourceReport, rule: HeldOutRule, log_notes: bool = True, prompts_only=False
):
    """Kept row numbers (file order, 8 bytes each) and the 1-based rows whose text is not a string."""
    from tqdm.auto import tqdm

    kept, not_text, unknown, empty = [], [], [], []  # the first rows of each kind, for the notes
    heldout = spec.take == "heldout"
    taxonomy = source_taxonomy(spec)
    fmt = spec.source_format
    row = 0
    with tqdm(total=len(table), desc=f"read {spec.name}", unit="doc", leave=False, mininterval=1.0) as bar:
        for batch in table.iter(batch_size=SCAN_BATCH):
            records = [fmt.reader(prompts_only)(spec, row) for row in _rows_of(batch)]
            usable = [USABLE.get(reason, reason) for _, reason in records]
            texts = [fmt.give("text", record) if reason is None else None for record, reason in records]
            if taxonomy is not None:
                usable = [
                    ok if not ok or taxonomy.resolve(str(c or "")) else "unknown"
                    for ok, c in zip(usable, batch[spec.category_field])
                ]
            keep = np.zeros(len(texts), dtype=bool)
            for j, (text, ok) in enumerate(zip(texts, usable)):
                if ok is None:
                    report.removed_empty += 1
                    _note_row(empty, row + j + 1)
                elif ok is False:
                    report.removed_not_text += 1
                    _note_row(not_text, row + j + 1)
                elif ok == "unknown":
                    report.removed_unknown_category += 1
                    _note_row(unknown, row + j + 1)
                elif rule(text) != heldout:
                    report.set_aside_by_split += 1
                elif spec.max_docs is not None and report.kept >= spec.max_docs:
                    report.capped += 1
                else:
                    report.kept += 1
                    keep[j] = True
            kept.append(row + np.flatnonzero(keep))
            row += len(texts)
            bar.update(len(texts))
    if empty:  # common in web corpora, so said without a warning; counted in the report all the same
        fields = "/".join(c for names in fmt.columns(spec).values() for c in names)
        note = f"{report.removed_empty} row(s) removed whose {fields} is missing or blank (rows {_shown(empty)})"
        report.notes.append(note)
        if log_notes:
            logger.info("%s: %s", spec.path or spec.dataset, note)
    if unknown:
        note = (
            f"{report.removed_unknown_category} row(s) removed whose {spec.category_field} is not a category of "
            f"taxonomy {spec.taxonomy!r} (rows {_shown(unknown)})"
        )
        report.notes.append(note)
        if log_notes:
            logger.warning("%s: %s", spec.path or spec.dataset, note)
    return np.concatenate(kept).astype(np.int64), not_text


def _note_row(rows: list[int], row: int) -> None:
    """Keep the first rows named in a note (one past the limit says there are more): memory stays flat."""
    if len(rows) <= MAX_NOTED_ROWS:
        rows.append(row)


def _shown(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:MAX_NOTED_ROWS])) + (", ..." if len(rows) > MAX_NOTED_ROWS else "")


def load_rows(spec: SourceSpec, config_file: str, key: str):
    """A source's rows with all their columns (benchmarks such as MBPP: text, code, test_list), as a Dataset;
    unreadable files and Hub ids are explained as for any source."""
    return _load(spec, config_file, key)


def load_source(spec: SourceSpec, config_file: str, key: str):
    """Documents of one source as an in-memory Dataset with ``text`` and ``category``, plus a report. For large
    sources prefer :func:`read_source` (texts stay on disk); SFT reads chats with :meth:`SourceDocs.to_chats`."""
    docs, report = read_source(spec, config_file, key)
    return docs.to_dataset(), report
