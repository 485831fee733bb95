"""The data step's cost per source: bytes to read, CPU core-hours, disk for the token shards.

Per source, the figures come from the first of: the rehearsal's measurements (``--rehearsal FILE``: its
bytes per token, the share of documents its filters kept, its cleaning seconds per byte and, where the
recorded Hub knew the files' real sizes, the bytes to read); the files themselves for a local source
(their size on disk); else the benchmark's defaults (``docs/benchmarks.md``, ``data_throughput.py``:
167,108 tokens/s per core, 3.26 bytes of text per token, every document kept) and, for a Hub source
whose size is unknown here, what its share of the budget takes read once (a source may repeat up to
``max_epochs`` times, so less can serve; the step reads what its split names, which may be more).

Shares: a source's ``tokens`` over the budget, else its weight's share of what replay leaves; the replay
pool (``replay_share``) is split by the sources' natural sizes, unknown before the step: evenly here.
A stage temperature also needs the sizes: its sources are counted evenly too (said so).
Shards hold 2 bytes a token (4 for vocabularies over 65,536, as datatrove writes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TOKENS_PER_CORE_SECOND = 167_108  # docs/benchmarks.md, the data step, 1 worker
DEFAULT_BYTES_PER_TOKEN = 3.26  # the same run: 32 MB of text, 10.3M tokens
DEFAULT_KEEP = 1.0


@dataclass
class SourceCost:
    name: str
    share: float
    tokens_needed: int
    bytes_to_read: int
    bytes_known: bool  # False: what its share takes read once (its size is unknown here)
    bytes_per_token: float
    keep: float
    core_hours: float
    shard_bytes: int
    origin: str  # rehearsal | local files | defaults


@dataclass
class DataCost:
    sources: list[SourceCost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_to_read(self) -> int:
        return sum(s.bytes_to_read for s in self.sources)

    @property
    def core_hours(self) -> float:
        return sum(s.core_hours for s in self.sources)

    @property
    def shard_bytes(self) -> int:
        return sum(s.shard_bytes for s in self.sources)


def shares(mixture: list[dict], train_tokens: int, replay_share: float, temperature) -> tuple[dict, list[str]]:
    notes = []
    replay = [s["name"] for s in mixture if s.get("replay")]
    fixed = {s["name"]: s["tokens"] / train_tokens for s in mixture if s.get("tokens") and not s.get("replay")}
    rest = [s for s in mixture if not s.get("replay") and s["name"] not in fixed]
    pool = (replay_share if replay else 0.0) * 1.0
    left = max(0.0, 1.0 - pool - sum(fixed.values()))
    if temperature and rest:
        notes.append("a stage temperature splits by the sources' sizes (unknown before the step): counted evenly")
        weights = {s["name"]: 1.0 for s in rest}
    else:
        weights = {s["name"]: float(s.get("weight", 1.0)) for s in rest}
    total = sum(weights.values()) or 1.0
    out = {**fixed, **{name: left * w / total for name, w in weights.items()}}
    if replay:
        notes.append(f"the replay pool ({pool:.0%}) is split by natural size, unknown before the step: evenly here")
        out.update({name: pool / len(replay) for name in replay})
    return out, notes


def _local_bytes(path: str) -> int | None:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def data_cost(stage_name: str, mix_args, vocab: int, rehearsal: dict | None) -> DataCost:
    cost = DataCost()
    split, cost.notes = shares(mix_args.mixture, mix_args.train_tokens, mix_args.replay_share, mix_args.temperature)
    token_bytes = 2 if vocab <= 2**16 else 4
    measured = (rehearsal or {}).get(stage_name, {})
    for source in mix_args.mixture:
        name = source["name"]
        share = split[name]
        needed = int(share * mix_args.train_tokens)
        m = measured.get(name, {})
        bpt = m.get("bytes_per_token") or DEFAULT_BYTES_PER_TOKEN
        keep = m.get("keep") or DEFAULT_KEEP
        per_core = m.get("bytes_per_core_second") or DEFAULT_TOKENS_PER_CORE_SECOND * bpt
        text_share = m.get("text_share") or 1.0  # text bytes per byte read (the rest: JSON, parquet, metadata)
        local = _local_bytes(source["path"]) if source.get("path") else None
        full = m.get("bytes_to_read") or local
        least = int(needed / keep * bpt / text_share)
        read = full if full is not None else least
        origin = "rehearsal" if m else "local files" if local is not None else "defaults"
        cost.sources.append(
            SourceCost(
                name=name,
                share=share,
                tokens_needed=needed,
                bytes_to_read=int(read),
                bytes_known=full is not None,
                bytes_per_token=bpt,
                keep=keep,
                core_hours=read / per_core / 3600,
                shard_bytes=int(read * text_share / bpt * keep * token_bytes),
                origin=origin,
            )
        )
    return cost


def _measure(row: dict, key: str, where: str):
    """A measured figure of a rehearsal row: absent, or a finite number >= 0 (anything else is not a measurement)."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    return value


def _rows(report, key: str, where: str) -> list[dict]:
    rows = report.get(key) if isinstance(report, dict) else None
    if rows is None:
        return []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{where}: expected a list of objects")
    return rows


def read_rehearsal(report: dict) -> dict:
    """``{stage: {source: {bytes_per_token, keep, bytes_per_core_second, bytes_to_read}}}`` from rehearsal.json.

    Read from the rehearsal's per-source rows (``sources``: ``stage``, ``name``, ``bytes_per_token``,
    ``kept_after`` {filter: documents after it}, ``clean_seconds``, ``bytes_read``, ``text_bytes``) and its
    full-size costs (``full_size.sources``: ``stage``, ``source``, ``bytes_to_read``) when it has them. A file of
    another shape, or a figure that is not a count or a size, raises ``ValueError`` naming where it is.
    """
    if not isinstance(report, dict):
        raise ValueError("expected a JSON object (the rehearsal.json that aurora-m rehearse writes)")
    out: dict = {}
    for i, row in enumerate(_rows(report, "sources", "sources")):
        where = f"sources[{i}]"
        entry = out.setdefault(row.get("stage"), {}).setdefault(row.get("name"), {})
        if bpt := _measure(row, "bytes_per_token", where):
            entry["bytes_per_token"] = float(bpt)
        kept_after = row.get("kept_after") or {}
        if not isinstance(kept_after, dict):
            raise ValueError(f"{where}.kept_after: expected a mapping of filter -> documents kept after it")
        kept = [_measure(kept_after, name, f"{where}.kept_after") for name in kept_after]
        if any(later > earlier for earlier, later in zip(kept, kept[1:])):
            raise ValueError(f"{where}.kept_after: a filter cannot keep more documents than reached it: {kept}")
        if kept and kept[0]:
            entry["keep"] = kept[-1] / kept[0]
        seconds, read = _measure(row, "clean_seconds", where), _measure(row, "bytes_read", where)
        if seconds and read:
            entry["bytes_per_core_second"] = read / seconds
        if (text := _measure(row, "text_bytes", where)) and read:
            entry["text_share"] = text / read
    full_size = report.get("full_size") or {}
    for i, row in enumerate(_rows(full_size, "sources", "full_size.sources")):
        if to_read := _measure(row, "bytes_to_read", f"full_size.sources[{i}]"):
            out.setdefault(row.get("stage"), {}).setdefault(row.get("source"), {})["bytes_to_read"] = to_read
    return out
