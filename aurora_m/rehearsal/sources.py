"""Reading one source of a real recipe as the cluster would, but only its first rows.

A Hub source is opened with the same ``load_dataset`` arguments the stage uses (``source_spec.hub_read_args``:
by id with config, data_dir, data_files, or a packaged builder on ``hf://`` paths; the split), streamed, and
read until ``rows`` rows or ``max_bytes`` of text; a local file is read
the same way through the json/parquet builder. Each row goes through the source's format (the columns it
maps, what it sets aside as empty or not text). What cannot be read becomes one line naming the source,
the repo and the reason: a loading script, a gated repo, no such config, a file glob that matches nothing,
a column that is not there.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

from ..data.bad_data_files import _diagnosed
from ..data.sources import heldout_rule
from ..errors import RecipeError, exception_chain
from ..hub_errors import explain_hub_errors
from ..source_spec import SourceSpec, find_source_list, hub_read_args, streamed_split


@dataclass
class SourceSample:
    """What one source gave the rehearsal (and what the report says about it)."""

    stage: str
    key: str  # the source list: mixture, sft_sources, perplexity_sources, ...
    name: str
    repo: str | None
    path: str | None
    config: str | None
    split: str
    data_dir: str | None = None
    data_files: object = None
    revision: str | None = None
    files_read: list[str] = field(default_factory=list)
    n_files: int | None = None  # files (streaming shards) the split resolves to
    rows_read: int = 0
    bytes_read: int = 0  # served by the (recorded) Hub when known, else the rows' text
    columns: list[str] = field(default_factory=list)
    columns_mapped: dict = field(default_factory=dict)  # source key -> columns
    unusable: dict = field(default_factory=dict)  # reason -> rows
    usable_rows: int = 0
    set_aside_by_split: int = 0  # rows on the other side of the source's train/held-out split
    text_bytes: int = 0
    seconds: float = 0.0
    hub_facts: dict = field(default_factory=dict)  # recorded Hub: gating, licence, facts not verified
    texts: list[str] = field(default_factory=list, repr=False)  # the training texts read (not in the report)
    prompts: list[str] = field(default_factory=list, repr=False)  # the requests alone (leakage checks)
    split_texts: list[str] = field(default_factory=list, repr=False)  # texts the held-out rule split (both sides)

    def report(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("texts", "prompts", "split_texts")}
        out["seconds"] = round(self.seconds, 3)
        return out


def open_stream(spec: SourceSpec, config_file, where: str):
    """The source as a streamed dataset, or one line saying why it cannot be read."""
    from datasets import load_dataset

    if spec.path is not None:
        kind = "parquet" if spec.path.endswith(".parquet") else "json"
        return load_dataset(kind, data_files=spec.path, split=spec.split, streaming=True)
    path, options = hub_read_args(spec)  # by id, or a packaged builder on hf:// paths (as the stage reads it)
    split, _ = streamed_split(spec.split)
    try:
        with explain_hub_errors(config_file, f"{where}.dataset", spec.dataset, "dataset"):
            return load_dataset(path, **options, split=split, streaming=True)
    except RecipeError:
        raise
    except Exception as err:  # noqa: BLE001 - named when it is the source's fault, re-raised otherwise
        reason = why_unreadable(err, spec)
        if reason is None:
            raise
        raise RecipeError(config_file, f"{where}.dataset", f"{spec.dataset}: {reason}") from err


def why_unreadable(err: BaseException, spec: SourceSpec) -> str | None:
    """The reason, in words, that datasets could not open a Hub source; None when it is not the source's fault."""
    text = " ".join(str(e) for e in exception_chain(err))
    if "Dataset scripts are no longer supported" in text:
        script = text.split("but found ", 1)[-1].split()[0]
        return (
            f"the repo ships a loading script ({script}), which datasets >= 4 refuses: read its raw files with "
            f"data_files through a packaged builder (hf://datasets/{spec.dataset}/...)"
        )
    if "BuilderConfig" in text and "not found" in text:
        return f"no config {spec.config_name!r} ({text.split('Available: ', 1)[-1][:200]})"
    if "Bad split" in text and "[" in spec.split:
        return (
            f"split {spec.split!r} is a slice, which a streamed read cannot take (a read that is not streamed "
            f"prepares the whole split first): name the split and bound the read with max_docs"
        )
    if "Unknown split" in text or "Bad split" in text:
        return f"no split {spec.split!r} ({text[:200]})"
    if any(m in text for m in ("Unable to find", "Couldn't find any data file", "No (supported) data files found")):
        where = spec.data_files or spec.data_dir or "the repo"
        return f"no data file matches {where!r} ({text[:200]})"
    if "doesn't contain any data files" in text or "is empty" in text:
        return f"no data files under {spec.data_dir or 'the repo'!r}"
    return None


def sample_source(
    spec: SourceSpec, stage: str, key: str, config_file, where: str, rows: int, max_bytes: int, hub=None
) -> SourceSample:
    """Read the first ``rows`` rows (or ``max_bytes`` of text) of one source through its format."""
    started = time.monotonic()
    sample = SourceSample(
        stage=stage,
        key=key,
        name=spec.name,
        repo=spec.dataset,
        path=spec.path,
        config=spec.config_name,
        split=spec.split,
        data_dir=spec.data_dir,
        data_files=spec.data_files,
    )
    served_before = hub.bytes_served[spec.dataset] if hub is not None and spec.dataset else 0
    reads_before = len(hub.reads) if hub is not None else 0
    stream = open_stream(spec, config_file, where)
    if spec.dataset is not None and (limit := streamed_split(spec.split)[1]) is not None:
        rows = min(rows, limit)  # split: NAME[:N] bounds the stage's own read
    sample.n_files = getattr(stream, "n_shards", None)
    fmt = spec.source_format
    prompts_only = find_source_list(
        key
    ).prompts_only  # the data step's rule: a prompt-only row where no answer is needed
    wanted = fmt.columns_for(spec, prompts_only)
    read = fmt.reader(prompts_only)
    if spec.taxonomy or spec.stratify:
        wanted = {**wanted, "category_field": [spec.category_field]}
    reasons: Counter = Counter()
    rule = heldout_rule(spec, config_file, key) if spec.holdout_fraction > 0 else None
    try:
        with explain_hub_errors(config_file, f"{where}.dataset", spec.dataset or spec.path, "dataset"):
            for row in itertools.islice(stream, rows):
                if not sample.columns:
                    sample.columns = list(row)
                    check_columns(spec, wanted, sample.columns, config_file, where)
                sample.rows_read += 1
                record, reason = read(spec, row)
                if reason:
                    reasons[reason] += 1
                    continue
                if rule is not None and fmt.can_give("text"):
                    sample.split_texts.append(fmt.give("text", record))
                if (
                    rule is not None
                    and fmt.can_give("text")
                    and rule(fmt.give("text", record)) != (spec.take == "heldout")
                ):
                    sample.set_aside_by_split += 1
                    continue
                sample.usable_rows += 1
                if fmt.can_give("prompt"):
                    sample.prompts.append(fmt.give("prompt", record))
                if fmt.can_give("text"):
                    text = fmt.give("text", record)
                    sample.texts.append(text)
                    sample.text_bytes += len(text.encode("utf-8"))
                if sample.text_bytes >= max_bytes:
                    break
    except RecipeError:
        raise
    except Exception as err:  # noqa: BLE001
        if spec.path and (error := _diagnosed(spec, config_file, where)) is not None:
            raise error from err  # bad bytes, a line that is not JSON: the data step's one line
        reason = why_unreadable(err, spec)
        if reason is None:
            raise
        raise RecipeError(config_file, f"{where}.dataset", f"{spec.dataset}: {reason}") from err
    if sample.rows_read == 0:
        raise RecipeError(config_file, where, f"{spec.origin}: no rows in split {spec.split!r}")
    sample.columns_mapped = wanted
    sample.unusable = dict(reasons)
    if hub is not None and spec.dataset:
        sample.bytes_read = hub.bytes_served[spec.dataset] - served_before
        repo = hub.repos.get(spec.dataset)
        sample.revision = repo.sha if repo else None
        sample.hub_facts = repo.facts() if repo else {}
        data_files = set(repo.real_sizes) if repo else set()
        read = {f for r, f in hub.reads[reads_before:] if r == spec.dataset}
        sample.files_read = sorted(read & data_files)
    else:
        sample.bytes_read = sample.text_bytes
    sample.seconds = time.monotonic() - started
    return sample


def check_columns(spec: SourceSpec, wanted: dict, columns: list[str], config_file, where: str) -> None:
    for source_key, names in wanted.items():
        for column in names:
            if column not in columns:
                raise RecipeError(
                    config_file,
                    f"{where}.{source_key}",
                    f"column {column!r} not in {spec.origin} (columns: {', '.join(columns)})",
                )
