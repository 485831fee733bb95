"""The first steps of every source's cleaning pipeline: read, count what cannot be used, split, count tokens.

datatrove's own readers skip a line that is not JSON, stop reading a file at the first byte that
is not UTF-8, and skip documents without text, each with no more than a log line. Here each of
those is a counted drop (``dropped_not_utf8``, ``dropped_invalid_json``, ``dropped_empty``, ...)
that reaches ``filter_report.json``; line numbers of the first few go to the task log.
"""

from __future__ import annotations

import functools
import glob
import sys
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader, ParquetReader
from datatrove.pipeline.tokens import DocumentTokenizer
from loguru import logger as task_log

from ..errors import RecipeError
from ..logs import progress_disabled
from ..source_spec import SourceSpec, hub_read_args, streamed_split
from .sources import HeldOutRule, source_taxonomy

NOTED_LINES = 5  # bad lines named in the task log per file; the count covers the rest
COUNT_BATCH = 256  # documents per filter batch


def document_fields(spec: SourceSpec, row: dict) -> tuple[str | None, str | None]:
    """(training text, None) for a usable row, (None, reason) for one that is not (the source's format decides)."""
    fmt = spec.source_format
    record, reason = fmt.read(spec, row)
    if reason:
        return None, reason
    if (taxonomy := source_taxonomy(spec)) and not taxonomy.resolve(str(row.get(spec.category_field) or "")):
        return None, "unknown_category"
    return fmt.give("text", record), None


class _SourceAdapter:
    """Turns a raw row into a small Document dict (text, id, source, language) and counts unusable rows."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec

    def __call__(self, reader, data: dict, path: str, id_in_file) -> dict:
        text, reason = document_fields(self.spec, data)
        if reason:
            reader.stat_update(f"dropped_{reason}")
            return {"text": ""}  # the reader skips it; the count above says why
        doc_id = data.get("id")
        return {
            "text": text,
            "id": str(doc_id) if doc_id is not None else f"{Path(path).name}/{id_in_file}",
            "metadata": {"source": self.spec.name, "language": self.spec.lang or "", "format": self.spec.format},
        }


class CountingJsonlReader(JsonlReader):
    """JSON lines, read as bytes so that a bad line is counted and the rest of the file still read."""

    name = "📖 jsonl (counted)"

    def read_file(self, filepath: str):
        import orjson

        noted = 0
        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            for li, raw in enumerate(f):
                if li == 0 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark (Windows exports)
                    raw = raw[3:]
                if not raw.strip():
                    self.stat_update("blank_lines")
                    continue
                with self.track_time():
                    try:
                        row = orjson.loads(raw)
                    except orjson.JSONDecodeError as err:
                        reason = "invalid_json"
                        try:
                            raw.decode("utf-8")
                        except UnicodeDecodeError:
                            reason = "not_utf8"
                        self.stat_update(f"dropped_{reason}")
                        if noted < NOTED_LINES:
                            noted += 1
                            task_log.warning(f"{filepath}:{li + 1}: {reason.replace('_', ' ')} ({err})")
                        continue
                    if not isinstance(row, dict):
                        self.stat_update("dropped_not_object")
                        continue
                    document = self.get_document_from_dict(row, filepath, li)
                if document:
                    yield document


class CountingParquetReader(ParquetReader):
    """Parquet row groups, naming the file when one cannot be read."""

    name = "📒 parquet (counted)"

    def read_file(self, filepath: str):
        import pyarrow.parquet as pq

        try:
            with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as pqf:
                row = 0
                for batch in pqf.iter_batches(batch_size=self.batch_size):
                    for data in batch.to_pylist():
                        document = self.get_document_from_dict(data, filepath, row)
                        row += 1
                        if document:
                            yield document
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise RecipeError(filepath, "parquet", f"a readable parquet file ({err})") from None


def local_files(spec: SourceSpec) -> list[Path]:
    path = Path(spec.path)
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]


def check_local_source(spec: SourceSpec, config_file, where: str) -> None:
    """Cheap checks before any worker starts: the files exist, a parquet footer is whole, the columns exist."""
    files = local_files(spec)
    if not files:
        raise RecipeError(config_file, f"{where}.path", f"no data files in {spec.path}")
    kinds = {"parquet" if f.suffix == ".parquet" else "json" if ".json" in f.name else "other" for f in files}
    if len(kinds) > 1 or kinds == {"other"}:
        found = ", ".join(sorted(f.name for f in files)[:4])
        raise RecipeError(
            config_file,
            f"{where}.path",
            f"one kind of data file in {spec.path} (jsonl, jsonl.gz or parquet), found {found}",
        )
    for file in files:
        if file.stat().st_size == 0:
            raise RecipeError(config_file, f"{where}.path", f"data file {file} is empty")
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                names = pq.ParquetFile(file).schema_arrow.names
            except (OSError, ValueError) as err:
                raise RecipeError(file, "parquet", f"a readable parquet file ({err})") from None
            for key, columns in _columns(spec).items():
                if missing := [c for c in columns if c not in names]:
                    raise RecipeError(
                        config_file,
                        f"{where}.{key}",
                        f"column(s) {', '.join(missing)} in {file} (it has {', '.join(names)})",
                    )


def _columns(spec: SourceSpec) -> dict[str, list[str]]:
    """The columns every row must hold, by the source key that names them."""
    return spec.source_format.columns(spec)


def check_hub_source(spec: SourceSpec, config_file, where: str) -> None:
    """Resolve a Hub source's files before any worker starts (no data is downloaded): a dataset that is
    gated, missing, or not in the cache while offline becomes one line with the fix."""
    from datasets import load_dataset_builder

    from ..hub_errors import explain_hub_errors

    path, options = hub_read_args(spec)
    with explain_hub_errors(config_file, f"{where}.dataset", spec.dataset, "dataset"):
        load_dataset_builder(path, **options)


def exact_name_pattern(name: str) -> str:
    """A glob that matches the file ``name`` and nothing else. datatrove turns a pattern without a wildcard into
    ``*NAME`` (``de.jsonl`` would also read ``code.jsonl`` beside it): the last character as a one-letter class
    is a wildcard to datatrove and matches that character alone; the rest is escaped."""
    return glob.escape(name[:-1]) + f"[{name[-1]}]"


HUB_BATCH_ROWS = 1000  # datatrove's HuggingFaceDatasetReader default


def source_reader(spec: SourceSpec, tasks_hint: int = 1):
    """A datatrove reader for one source: local jsonl/parquet (file or folder), or a Hub dataset streamed."""
    adapter = _SourceAdapter(spec)
    if spec.dataset is not None:
        from datatrove.pipeline.readers import HuggingFaceDatasetReader

        path, options = hub_read_args(spec)
        split, rows = streamed_split(spec.split)
        return HuggingFaceDatasetReader(
            path,
            dataset_options={**options, "split": split},
            streaming=True,
            limit=rows or -1,
            # a streamed batch is read whole before the limit applies: NAME[:N] reads N rows, not 1,000
            batch_size=min(rows, HUB_BATCH_ROWS) if rows else HUB_BATCH_ROWS,
            text_key=spec.text_field,
            adapter=adapter,
        )
    path = Path(spec.path)
    folder, pattern = (str(path), None) if path.is_dir() else (str(path.parent), exact_name_pattern(path.name))
    if path.suffix == ".parquet" or (path.is_dir() and any(p.suffix == ".parquet" for p in local_files(spec))):
        return CountingParquetReader(
            folder, glob_pattern=pattern or "*.parquet", adapter=adapter, text_key=spec.text_field, add_file_path=False
        )
    return CountingJsonlReader(
        folder,
        glob_pattern=pattern or "*.json*",
        adapter=adapter,
        text_key=spec.text_field,
        compression="infer",
        add_file_path=False,
    )


@functools.cache
def _tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)  # once per process, shared by every step that counts


@functools.cache
def eos_tokenizer(path: str, eos: str):
    """The tokenizer that ends each document with ``eos``, once per process (see :class:`ShardWriter`)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer.from_file(path)
    tokenizer.post_processor = TemplateProcessing(
        single="$A <EOS>", pair=None, special_tokens=[("<EOS>", tokenizer.token_to_id(eos))]
    )
    return tokenizer


class ShardWriter(DocumentTokenizer):
    """datatrove's DocumentTokenizer with one tokenizer per process.

    It loads its own tokenizer each task, and a ``tokenizers.Tokenizer`` made and dropped keeps about
    1 MB (measured: +0.9 MB per task, so a worker's memory grew with the number of tasks, i.e. with
    the corpus); a worker's tasks now share one.
    """

    @functools.cached_property
    def tokenizer(self):
        return eos_tokenizer(self.tokenizer_name_or_path, self.eos_token)


class _TokenCounter:
    """Tokens (with each document's EOS) of the documents a filter removes: only those are tokenized here;
    the kept ones are counted by datatrove's tokenizer, so cleaning does not pay for a second pass."""

    def __init__(self, tokenizer_file: str | None):
        self.tokenizer_file = tokenizer_file

    def __call__(self, texts: list[str]) -> int:
        if not texts:
            return 0
        encoded = _tokenizer(self.tokenizer_file).encode_batch_fast(texts, add_special_tokens=False)
        return sum(len(e.ids) + 1 for e in encoded)


class Counted(BaseFilter):
    """A filter whose removals are also counted in tokens (``removed_tokens``) and kept for inspection."""

    type = "🔻 - FILTER"

    def __init__(
        self,
        inner: BaseFilter,
        report_name: str,
        tokenizer_file: str | None,
        exclusion_writer=None,
        heldout: HeldOutRule | None = None,
    ):
        self.name = report_name  # before PipelineStep's init, which names the step's stats
        # batches let the removed documents of a batch be tokenized together
        super().__init__(exclusion_writer, batch_size=max(COUNT_BATCH, getattr(inner, "batch_size", 1)))
        self.inner = inner
        self.report_name = report_name
        # the inner filter's own counters (reroutes, C4's lines) land in the report
        for step in (inner, *getattr(inner, "by_language", {}).values()):
            step.stats = self.stats
        self.count = _TokenCounter(tokenizer_file)
        self.heldout = heldout  # the source's split: removals from its held-out side are counted apart

    def filter_batch(self, batch: list[Document]):
        results = self.inner.filter_batch(batch)
        removed = [
            doc.text
            for doc, result in zip(batch, results)
            if result is not True and not (isinstance(result, tuple) and result[0])
        ]
        if removed:
            self.stat_update("removed_tokens", value=self.count(removed))
            if self.heldout is not None and (held := sum(map(self.heldout, removed))):
                self.stat_update("removed_heldout_docs", value=held)
        return results

    def filter(self, doc: Document):
        return self.filter_batch([doc])[0]


class HeldOut(BaseFilter):
    """Sets aside the held-out side of the text-hash split (the same hash as eval and SFT use)."""

    name = "✂ held-out split"

    def __init__(self, rule: HeldOutRule, tokenizer_file: str | None = None):
        super().__init__()
        self.rule = rule
        self.count = _TokenCounter(tokenizer_file)

    def filter(self, doc: Document):
        if not self.rule(doc.text):
            return True
        self.stat_update("set_aside_tokens", value=self.count([doc.text]))
        return False, "held_out"


class TooLong(BaseFilter):
    """A document of megabytes is a dump, not text: removed before any filter spends time on it."""

    name = "📏 length cap"

    def __init__(self, max_chars: int, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.max_chars = max_chars

    def filter(self, doc: Document):
        return True if len(doc.text) <= self.max_chars else (False, "too_long")


class Tally(PipelineStep):
    """Counts documents passing this point per source (a rerouted document counts for its new source)."""

    type = "📊 - STATS"

    def __init__(self, after: str, progress: bool = False):
        self.name = f"tally after {after}"  # before PipelineStep's init, which names the step's stats
        super().__init__()
        self.after = after
        self.progress = progress

    def run(self, data, rank: int = 0, world_size: int = 1):
        from collections import Counter

        from tqdm.auto import tqdm

        counts: Counter = Counter()  # flushed once: a stats update per document would cost more than the count
        try:
            with tqdm(
                desc=f"clean (task {rank})",
                unit="doc",
                file=sys.__stderr__,
                mininterval=2.0,
                leave=False,
                disable=not self.progress or rank != 0 or progress_disabled(),
            ) as bar:
                for doc in data:
                    counts[doc.metadata.get("source", "")] += 1
                    if self.progress:
                        bar.update()
                    yield doc
        finally:
            for source, n in counts.items():
                self.stat_update(f"docs/{source}", value=n)
