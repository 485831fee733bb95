"""Diagnosing a local data file that ``datasets`` could not read: one line naming the file, the line and what
is wrong with it (not UTF-8, not JSON, not a row, empty, unreadable parquet). Only called once reading has
failed, so a healthy file is never scanned twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RecipeError
from ..source_spec import SourceSpec


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def _not_utf8(byte: int, column: int) -> str:
    return f"not UTF-8 (byte 0x{byte:02x} at column {column})"


def _not_json(err: json.JSONDecodeError) -> str:
    # json's messages that point at the position end in " at" ("Invalid control character at")
    return f"not valid JSON ({err.msg.removesuffix(' at')} at column {err.colno})"


def _diagnose_json_document(path: Path) -> tuple[int | None, str] | None:
    """A .json file holding one array of rows (rather than one row per line)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        return raw.count(b"\n", 0, err.start) + 1, _not_utf8(raw[err.start], err.start - line_start + 1)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        return err.lineno, _not_json(err)
    if isinstance(rows, list):
        if not rows:
            return None, "empty data file (no rows)"
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            return None, f"item {bad + 1} of the array is {_json_type(rows[bad])}, not a JSON object"
    return None


def diagnose_data_file(path: str | Path) -> tuple[int | None, str] | None:
    """(line or None, what is wrong) for a local data file that ``datasets`` could not read; None if it
    looks fine. Reads the whole file, so call it only once reading has already failed."""
    path = Path(path)
    if not path.is_file():
        return None, "no such file" if not path.exists() else "not a file"
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows == 0:
                return None, "empty data file (no rows)"
            for _ in parquet.iter_batches():
                pass
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for the same kinds of damage
            return None, f"not a readable parquet file ({' '.join(str(err).split())})"
        return None
    rows = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, _not_utf8(raw[err.start], err.start + 1)
            if not line.strip():
                continue
            if rows == 0 and path.suffix == ".json" and line.lstrip().startswith("["):
                return _diagnose_json_document(path)  # a .json array; in .jsonl a list is a bad row
            rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                return number, _not_json(err)
            if not isinstance(row, dict):
                return number, f"{_json_type(row)}, not a JSON object with named fields"
    if rows == 0:
        return None, "empty data file (no rows)"
    return None


def _data_file_error(spec: SourceSpec, config_file: str, where: str, line: int | None, problem: str) -> RecipeError:
    """One line naming the data file, the line, the problem and the recipe key that named the file."""
    return RecipeError(spec.path, f"line {line}" if line else None, f"{problem}; source {where}.path in {config_file}")


def _diagnosed(spec: SourceSpec, config_file: str, where: str) -> RecipeError | None:
    """The error for a local file that failed to read, or None if the file looks fine."""
    found = diagnose_data_file(spec.path)
    return None if found is None else _data_file_error(spec, config_file, where, *found)


def _root_message(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"
