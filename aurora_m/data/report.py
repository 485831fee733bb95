"""``filter_report.json``: documents and tokens in, removed by each filter, and kept, per source and language.

Read from datatrove's merged ``stats.json`` of each phase. Each filter is followed by a ``Tally``
(documents and tokens per source), so what a filter removed is the difference of two tallies;
the reasons come from the filter's own ``dropped_<reason>`` counters. Rows the reader could not
use (bad bytes, bad JSON, no text) are counted before any tally. Nothing removed goes uncounted:
``docs_in == sum(removed) + set_aside + rerouted_out + kept_before_dedup`` for every source.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..layout import DatasetDir
from ..source_spec import SourceSpec
from .multisource import source_stats

logger = logging.getLogger(__name__)

TALLY = "tally after "
READER_DROPS = ("not_utf8", "invalid_json", "not_object", "empty", "missing_field", "not_text")


def _num(value) -> float:
    return value.get("total", 0) if isinstance(value, dict) else (value or 0)


def _stats(folder: Path) -> list[dict]:
    path = folder / "stats.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _tally(step: dict) -> dict[str, int]:
    return {key.split("/", 1)[1]: int(_num(v)) for key, v in step["stats"].items() if key.startswith("docs/")}


def _reasons(step: dict) -> dict[str, int]:
    return {k.removeprefix("dropped_"): int(_num(v)) for k, v in step["stats"].items() if k.startswith("dropped_")}


def _clean_source(stats: list[dict], spec: SourceSpec) -> tuple[dict, dict[str, int]]:
    """One source's clean phase, and how many documents it handed on per (possibly rerouted) source.

    Documents come from the tallies around each step; tokens from the step itself (a filter
    tokenizes what it removes, the split what it sets aside; kept tokens come from the shards).
    """
    reader = stats[0]["stats"] if stats else {}
    unusable = {r: int(_num(reader.get(f"dropped_{r}", 0))) for r in READER_DROPS}
    docs_read = int(_num(reader.get("documents", 0)))
    row: dict = {
        "name": spec.name,
        "language": spec.lang or "",
        "format": spec.format,
        "rows_unusable": {k: v for k, v in unusable.items() if v},
        "blank_lines": int(_num(reader.get("blank_lines", 0))),
        "docs_in": docs_read + sum(unusable.values()),
        "steps": [],
    }
    prev: dict[str, int] = {spec.name: docs_read}
    pending: list[dict] = []  # the steps since the last tally (one filter, or the PII step)
    for step in stats[1:]:
        if TALLY not in step["name"]:
            pending.append(step)
            continue
        after = step["name"].split(TALLY, 1)[1]
        cur = _tally(step)
        own = cur.get(spec.name, 0)
        out = {s: n for s, n in cur.items() if s != spec.name and s not in prev}
        removed = prev.get(spec.name, 0) - own - sum(out.values())
        counters = {k: int(_num(v)) for p in pending for k, v in p["stats"].items()}
        if after == "held_out":
            entry = {"step": after, "set_aside_docs": removed, "set_aside_tokens": counters.get("set_aside_tokens", 0)}
        else:
            entry = {
                "step": after,
                "removed_docs": removed,
                "removed_tokens": counters.get("removed_tokens", 0) if after != "length_cap" else None,
                "reasons": {k: v for p in pending for k, v in _reasons(p).items()},
            }
            if after == "length_cap":
                entry["note"] = "not tokenized (longer than max_doc_chars)"
            else:  # of those, the documents on the held-out side: never reach the held-out windows either
                entry["removed_heldout_docs"] = counters.get("removed_heldout_docs", 0)
        if out:
            entry["rerouted_out"] = out
        for s, n in prev.items():  # rerouted documents that a later filter of this pipeline removed
            if s != spec.name and n - cur.get(s, 0):
                entry.setdefault("rerouted_removed", {})[s] = n - cur.get(s, 0)
        row["steps"].append(entry)
        prev = cur
        pending = []
    return row, prev


def why_empty(d: DatasetDir, spec: SourceSpec) -> str:
    """What removed every document of a source: its rows and the counts of each reason, for one line."""
    row, handed = _clean_source(source_stats(d.logs / "clean" / "by_source" / spec.name), spec)
    reasons = dict(row["rows_unusable"])
    for step in row["steps"]:
        if step.get("set_aside_docs"):
            reasons["held_out"] = step["set_aside_docs"]
        for reason, n in step.get("reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
        for target, n in step.get("rerouted_out", {}).items():
            reasons[f"rerouted to {target}"] = n
    # documents cleaning kept but none reached the shards: MinHash found each a near-duplicate of another
    if handed_on := handed.get(spec.name, 0):
        reasons["minhash duplicates"] = handed_on
    top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    return f"{row['docs_in']} rows read, none kept ({top or 'no rows'})"


def filter_report(
    d: DatasetDir, specs: list[SourceSpec], args, token_size: int = 2, tokenizer_file: str | None = None
) -> dict:
    sources, handed_on = [], {}
    for spec in specs:
        row, out = _clean_source(source_stats(d.logs / "clean" / "by_source" / spec.name), spec)
        sources.append(row)
        for s, n in out.items():
            handed_on[s] = handed_on.get(s, 0) + n
    dedup = _stats(d.logs / "dedup" / "filter")
    after_dedup = _tally(dedup[-2]) if len(dedup) >= 2 else None
    for row in sources:
        before = handed_on.get(row["name"], 0)
        row["received_by_reroute"] = _received(sources, row["name"])
        if after_dedup is not None:
            row["kept_docs"] = after_dedup.get(row["name"], 0)
            row["minhash"] = {
                "removed_docs": before - row["kept_docs"],
                "removed_tokens": _removed_tokens(d.removed_by(row["name"], "minhash"), tokenizer_file),
            }
        else:
            row["kept_docs"] = before
        row["kept_tokens"] = _ds_tokens(d.source_tokens(row["name"]), token_size)
        removed = [(s["removed_docs"], s.get("removed_tokens")) for s in row["steps"] if "removed_docs" in s]
        if "minhash" in row:
            removed.append((row["minhash"]["removed_docs"], row["minhash"]["removed_tokens"]))
        row["removed_docs"] = sum(r[0] for r in removed) + sum(row["rows_unusable"].values())
        row["removed_tokens"] = sum(r[1] or 0 for r in removed)
        aside = sum(s.get("set_aside_tokens", 0) for s in row["steps"])
        row["tokens_in"] = row["removed_tokens"] + aside + row["kept_tokens"]
    from .clean import language_notes

    prose = [s.lang for s in specs if s.source_format.free_text and s.lang not in (None, "code")]
    return {
        "sources": sources,
        "languages": _by_language(sources),
        "notes": [
            "tokens include each document's EOS; kept_tokens are the shards' tokens (fill-in-the-middle "
            "adds its three special tokens to a rewritten code document); documents longer than "
            "max_doc_chars are counted but never tokenized",
            # what the project has no setting for, per language (the same lines validate printed)
            *language_notes(
                dict.fromkeys(prose), toxicity=args.toxicity_filter, quality_filters=tuple(args.quality_filters)
            ),
        ],
        "removed_documents": str(d.removed.name) if args.keep_removed else None,
    }


def _removed_tokens(folder: Path, tokenizer_file: str | None) -> int | None:
    """Tokens of the documents kept under ``folder`` (MinHash duplicates: few, so read back after the fact)."""
    if tokenizer_file is None or not folder.is_dir():
        return None if tokenizer_file is None else 0
    import gzip

    from tokenizers import Tokenizer

    tok, total = Tokenizer.from_file(tokenizer_file), 0
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line in fh if line.strip()]
        total += sum(len(e.ids) + 1 for e in tok.encode_batch_fast(texts, add_special_tokens=False))
    return total


def _received(sources: list[dict], name: str) -> dict:
    got = {}
    for row in sources:
        for step in row["steps"]:
            if name in step.get("rerouted_out", {}):
                got[row["name"]] = step["rerouted_out"][name]
    return got


def _ds_tokens(folder: Path, token_size: int) -> int:
    from .stream import ds_token_counts

    return sum(ds_token_counts(folder, token_size).values())


def _by_language(sources: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for row in sources:
        lang = out.setdefault(
            row["language"] or row["format"],
            {
                "docs_in": 0,
                "tokens_in": 0,
                "removed_docs": 0,
                "removed_tokens": 0,
                "kept_docs": 0,
                "kept_tokens": 0,
                "removed_by": {},
            },
        )
        lang["docs_in"] += row["docs_in"]
        lang["tokens_in"] += row["tokens_in"]
        lang["removed_docs"] += row["removed_docs"]
        lang["removed_tokens"] += row["removed_tokens"]
        lang["kept_docs"] += row["kept_docs"]
        lang["kept_tokens"] += row["kept_tokens"]
        for step in row["steps"]:
            lang["set_aside_docs"] = lang.get("set_aside_docs", 0) + step.get("set_aside_docs", 0)
            lang["rerouted_out_docs"] = lang.get("rerouted_out_docs", 0) + sum(step.get("rerouted_out", {}).values())
            lang["rerouted_removed_docs"] = lang.get("rerouted_removed_docs", 0) + sum(
                step.get("rerouted_removed", {}).values()
            )
        lang["received_docs"] = lang.get("received_docs", 0) + sum(row["received_by_reroute"].values())
        for step in row["steps"]:
            if step.get("removed_docs"):
                by = lang["removed_by"].setdefault(step["step"], {"docs": 0, "tokens": 0})
                by["docs"] += step["removed_docs"]
                by["tokens"] += step.get("removed_tokens") or 0
        if row.get("minhash", {}).get("removed_docs"):
            by = lang["removed_by"].setdefault("minhash", {"docs": 0, "tokens": 0})
            by["docs"] += row["minhash"]["removed_docs"]
            by["tokens"] += row["minhash"]["removed_tokens"] or 0
        for reason, n in row["rows_unusable"].items():
            by = lang["removed_by"].setdefault(f"read:{reason}", {"docs": 0, "tokens": 0})
            by["docs"] += n
    return out


def filter_table(report: dict) -> str:
    steps: list[str] = []
    for row in report["sources"]:
        for s in row["steps"]:
            if "removed_docs" in s and s["step"] not in steps:
                steps.append(s["step"])
    header = ["source", "lang", "docs in", "unusable"] + steps + ["minhash", "held out", "kept docs", "kept tokens"]
    lines = [header]
    for row in report["sources"]:
        by = {s["step"]: s for s in row["steps"]}
        lines.append(
            [
                row["name"],
                row["language"] or row["format"],
                str(row["docs_in"]),
                str(sum(row["rows_unusable"].values())),
            ]
            + [str(by[s]["removed_docs"]) if s in by else "-" for s in steps]
            + [
                str(row.get("minhash", {}).get("removed_docs", "-")),
                str(by.get("held_out", {}).get("set_aside_docs", 0)),
                str(row["kept_docs"]),
                f"{row['kept_tokens']:,}",
            ]
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in lines)


def log_filter_report(report: dict) -> None:
    logger.info("documents removed by each filter (filter_report.json):\n%s", filter_table(report))
    for note in report["notes"][1:]:
        logger.warning("%s", note)


def source_sizes(d: DatasetDir, specs: list[SourceSpec], seq_length: int, token_size: int = 2):
    from .mixer import SourceSize
    from .stream import source_windows

    sizes = []
    for spec in specs:
        tokens, windows = source_windows(d.source_tokens(spec.name), seq_length, token_size)
        sizes.append(
            SourceSize(
                name=spec.name,
                tokens=tokens,
                windows=windows,
                tokens_requested=spec.tokens,
                weight=spec.weight,
                replay=spec.replay,
                max_epochs=spec.max_epochs,
            )
        )
    return sizes
