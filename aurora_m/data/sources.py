"""Read one source of a mixture into documents, counting everything that is set aside."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..args import SourceSpec
from ..errors import RecipeError
from .formats import instruction_prompt, instruction_text

HASH_SPACE = 2**64


@dataclass
class SourceReport:
    name: str
    docs_read: int = 0
    removed_empty: int = 0
    set_aside_by_split: int = 0  # the other side of the train/heldout hash split
    capped: int = 0  # beyond max_docs
    kept: int = 0
    notes: list[str] = field(default_factory=list)


def in_heldout(text: str, fraction: float) -> bool:
    """A document's side of the split depends on its text only, so CAT, SFT and eval always agree."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * HASH_SPACE


def _load(spec: SourceSpec):
    from datasets import load_dataset

    if spec.path is not None:
        kind = "parquet" if spec.path.endswith(".parquet") else "json"
        return load_dataset(kind, data_files=spec.path, split=spec.split)
    return load_dataset(spec.dataset, spec.config_name, data_dir=spec.data_dir, split=spec.split)


def load_source(spec: SourceSpec, config_file: str, key: str, *, prompt_completion: bool = False):
    """Documents of one source as a Dataset with ``text`` (or ``prompt``/``completion``), plus a report.

    ``config_file``/``key`` name where the source was declared, for errors about its columns.
    """
    ds = _load(spec)
    where = f"{key}[{spec.name}]"
    needed = [spec.text_field] if spec.format == "text" else [spec.instruction_field, spec.response_field]
    for column in needed:
        if column not in ds.column_names:
            field_key = "text_field" if spec.format == "text" else (
                "instruction_field" if column == spec.instruction_field else "response_field")
            raise RecipeError(config_file, f"{where}.{field_key}",
                              f"column {column!r} not in {spec.path or spec.dataset} (columns: {', '.join(ds.column_names)})")
    if prompt_completion and spec.format != "instruction":
        raise RecipeError(config_file, f"{where}.format", "SFT sources need format: instruction")
    has_category = spec.category_field in ds.column_names
    report = SourceReport(name=spec.name, docs_read=len(ds))
    rows = {"text": [], "prompt": [], "completion": [], "category": []}
    from tqdm.auto import tqdm

    for row in tqdm(ds, desc=f"read {spec.name}", unit="doc", leave=False, mininterval=1.0):
        if spec.format == "text":
            text = row[spec.text_field]
            ok = isinstance(text, str) and text.strip()
        else:
            ins, resp = row[spec.instruction_field], row[spec.response_field]
            ok = isinstance(ins, str) and isinstance(resp, str) and ins.strip() and resp.strip()
            text = instruction_text(ins, resp) if ok else None
        if not ok:
            report.removed_empty += 1
            continue
        if in_heldout(text, spec.holdout_fraction) != (spec.take == "heldout"):
            report.set_aside_by_split += 1
            continue
        if spec.max_docs is not None and report.kept >= spec.max_docs:
            report.capped += 1
            continue
        report.kept += 1
        rows["text"].append(text)
        if spec.format == "instruction":
            rows["prompt"].append(instruction_prompt(ins))
            rows["completion"].append(resp.strip())
        rows["category"].append(str(row[spec.category_field]) if has_category else "")
    if report.kept == 0:
        raise RecipeError(config_file, where, f"no documents left after splitting/filtering ({report.docs_read} read)")
    from datasets import Dataset

    if not prompt_completion:
        rows = {"text": rows["text"], "category": rows["category"]}
    else:
        rows = {"prompt": rows["prompt"], "completion": rows["completion"], "category": rows["category"]}
    return Dataset.from_dict(rows), report
