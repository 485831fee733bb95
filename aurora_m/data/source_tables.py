"""Loading a source's table with ``datasets.load_dataset`` (local jsonl/json/parquet files, or a Hub dataset)
into its memory-mapped Arrow cache; a file that fails to load is diagnosed (:mod:`.bad_data_files`).

A Hub dataset is always streamed (``split: "train[:N]"`` takes its first N rows) and the rows read are written
to an Arrow table in the cache: reading a bounded part never prepares the whole config (CulturaX's is
terabytes), and a second read of the same rows is served from the cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..hub_errors import explain_hub_errors, offline_variables
from ..io import read_json_or_none, write_json
from ..source_spec import SourceSpec, hub_read_args, streamed_split
from .bad_data_files import _data_file_error, _diagnosed, _root_message


def _load(spec: SourceSpec, config_file: str, where: str):
    from datasets import load_dataset

    if spec.path is None:
        return _load_hub(spec, config_file, where)
    kind = "parquet" if spec.path.endswith(".parquet") else "json"
    try:
        table = load_dataset(kind, data_files=spec.path, split=spec.split)
        if kind == "json" and _mixed_columns(table, spec):
            # datasets types a column mixing strings and numbers as Json and stores the string "4" as the number 4:
            # read the fields from the file itself, so every string keeps its text
            return _load_fields(spec)
        return table
    except Exception as err:
        error = _diagnosed(spec, config_file, where)
        if error is not None:
            raise error from err
        if kind == "json" and "column names don't match" in _root_message(err):
            # a key that appears only in late rows (real corpora have optional fields): the json builder fixes
            # its schema on the first block, so read just the fields this source uses instead
            return _load_fields(spec)
        import pyarrow as pa
        from datasets.exceptions import DatasetsError

        if isinstance(err, (DatasetsError, pa.ArrowException)):  # the file's fault, in words we did not find
            problem = f"could not be read ({_root_message(err)})"
            raise _data_file_error(spec, config_file, where, None, problem) from err
        raise


def _load_hub(spec: SourceSpec, config_file: str, where: str):
    """A Hub source streamed (its first N rows with ``split: NAME[:N]``) into a cached Arrow table."""
    from datasets import Dataset

    split, rows = streamed_split(spec.split)
    with explain_hub_errors(config_file, f"{where}.dataset", spec.dataset, "dataset"):
        path, options = hub_read_args(spec, _hub_revision(spec.dataset))
        return Dataset.from_generator(
            _streamed_rows,
            gen_kwargs={"path": path, "options": json.dumps(options, sort_keys=True), "split": split, "rows": rows},
        )


REVISIONS_FILE = "aurora_m_hub_revisions.json"  # in the datasets cache: the commit each repo was last read at


def _hub_revision(repo_id: str) -> str | None:
    """The commit the Hub serves for ``repo_id`` now, pinned for the read (so the cached rows are those of that
    commit, and an updated repo is read again); offline, the commit the last online read saw (None: never read)."""
    import datasets.config

    record = Path(datasets.config.HF_DATASETS_CACHE) / REVISIONS_FILE
    known = read_json_or_none(record)
    known = known if isinstance(known, dict) else {}  # a damaged record is as good as none: it is made again
    if offline_variables():
        return known.get(repo_id)
    from huggingface_hub import HfApi

    sha = HfApi().dataset_info(repo_id).sha
    if known.get(repo_id) != sha:
        write_json(record, dict(sorted({**known, repo_id: sha}.items())))
    return sha


def _streamed_rows(path: str, options: str, split: str, rows: int | None):
    """Rows of a Hub dataset, streamed (``rows``: the first ones only); the options come as JSON, since a list in
    ``gen_kwargs`` would be sharded."""
    from datasets import load_dataset

    stream = load_dataset(path, **json.loads(options), split=split, streaming=True)
    yield from stream.take(rows) if rows is not None else stream


def _mixed_columns(table, spec: SourceSpec) -> list[str]:
    """The columns this source reads that datasets typed as Json (values of several JSON types in one column)."""
    from datasets import Json

    used = [c for names in spec.source_format.columns(spec).values() for c in names] + [spec.category_field]
    return [c for c in used if c and isinstance(table.features.get(c), Json)]


def _json_rows(path: str, fields: tuple[str, ...], stamp: tuple):
    """Rows of a jsonl file reduced to ``fields`` (the category last). Text fields are handed to a Json column as
    JSON text (which it stores as given and decodes with json.loads), so a string stays a string and a number stays
    a number: the reader keeps the one and counts the other as not text."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                yield {f: None if row.get(f) is None else json.dumps(row[f]) for f in fields[:-1]} | {
                    fields[-1]: row.get(fields[-1]) if isinstance(row.get(fields[-1]), str) else ""
                }  # category


def _load_fields(spec: SourceSpec):
    from datasets import Dataset, Features, Json, Value

    texts = [c for names in spec.source_format.columns(spec).values() for c in names]
    fields = [f for f in dict.fromkeys(texts) if f != spec.category_field] + [spec.category_field]
    stat = Path(spec.path).stat()  # part of the cache key: an edited file is read again
    return Dataset.from_generator(
        _json_rows,
        features=Features({f: Json() for f in fields[:-1]} | {fields[-1]: Value("string")}),
        gen_kwargs={
            "path": spec.path,
            "fields": tuple(fields),  # a list would be sharded
            "stamp": (stat.st_size, stat.st_mtime_ns),
        },
    )
