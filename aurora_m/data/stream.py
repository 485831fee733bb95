"""The sampling index over tokenized shards, and the memory-mapped dataset that reads it.

A source's tokens are datatrove ``.ds`` files in one folder: raw little-endian uint16 (``token_size``
2) or uint32 (4), each document followed by EOS (the ``.ds.index`` / ``.ds.metadata`` / ``.ds.loss``
files beside them are not read). Its windows: for each ``.ds`` file in sorted name order, its
``n_tokens // seq_length`` non-overlapping windows (a window never spans two files, so a file's tail
shorter than a window is never read); window k of the source is the k-th of that concatenation.

The index is the whole sampling. Stream position p -> (source id, window number), where source id is
the row's place in the resolved table. Positions come in chunks of ``CHUNK`` (2**16): a chunk's
per-source counts are the cumulative quotas (position_end * windows_i / N, apportioned exactly in
integers), so every chunk is within two windows per source of the table's shares and the whole index
gives each source exactly its windows; the chunk's source ids are shuffled by a generator seeded from
(seed, chunk). Within a source, windows are drawn epoch by epoch, each epoch a permutation of all its
windows from a generator seeded from (seed, blake2b(source name), epoch); a partial last epoch takes the
first k of its permutation, so no window repeats twice before every window has repeated once.

File format: a ``.npy`` of shape (N, 2) int64, column 0 the source id, column 1 the window number
(``np.load(path, mmap_mode="r")`` reads it), written sequentially chunk by chunk, and beside it
``<index>.json`` naming the sources (names, windows, available windows, seq_length, seed) so a reader
can check that the shards are the ones it was built for. Same seed and rows -> byte-identical files.

Cost at the real size (377B tokens / 2048 = 184M windows): the index is 16 bytes a position, 2.9 GB on
disk, never read whole (the dataset maps it; a position touches one page). Building holds one chunk
(~3 MB) plus each source's current epoch permutation as uint32 (4 bytes per available window: ~0.7 GB
if the 184M windows are all distinct, less when sources repeat); 20M positions build in 2 s on one core,
so the real index takes well under a minute.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..errors import RecipeError
from ..io import atomic_file, read_json_or_none, write_text
from .mixer import MixRow, name_key, source_rng

logger = logging.getLogger(__name__)

CHUNK = 2**16  # positions shuffled together: the stream is close to the table's shares at this scale
INDEX_FORMAT = 1
MAX_OPEN_SHARDS = 128  # memory maps kept open per process (each holds a file descriptor)
_CHUNK_KEY = name_key("\0chunk")  # keeps the chunk generators apart from the per-source ones
TOKEN_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def ds_files(folder: str | Path) -> list[Path]:
    """A source's token files, in the order its windows are numbered."""
    return sorted(Path(folder).glob("*.ds"), key=lambda p: p.name)


def _token_dtype(token_size: int) -> np.dtype:
    if token_size not in TOKEN_DTYPES:
        raise ValueError(f"token_size must be 2 (uint16) or 4 (uint32), got {token_size}")
    return TOKEN_DTYPES[token_size]


def _file_tokens(path: Path, token_size: int) -> int:
    size = path.stat().st_size
    if size % token_size:
        raise RecipeError(
            path,
            None,
            f"has {size} bytes, not a whole number of {token_size}-byte tokens: the "
            "file is truncated; run the data step again",
        )
    return size // token_size


def ds_token_counts(folder: str | Path, token_size: int = 2) -> dict[str, int]:
    """Tokens of each ``.ds`` file (by file name, in window order), from file sizes alone; {} for no folder."""
    _token_dtype(token_size)
    if not Path(folder).is_dir():
        return {}
    return {p.name: _file_tokens(p, token_size) for p in ds_files(folder)}


def source_windows(folder: str | Path, seq_length: int, token_size: int = 2) -> tuple[int, int]:
    """(tokens, full windows) of a source folder (what ``mixer.SourceSize`` takes)."""
    counts = ds_token_counts(folder, token_size).values()
    return sum(counts), sum(n // seq_length for n in counts)


def index_meta_path(index_path: str | Path) -> Path:
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".json")


def _chunk_counts(windows: list[int], total: int, chunk: int):
    """(start, end, per-source counts) for each chunk: cumulative quotas apportioned exactly in integers.

    A source's quota up to position ``end`` is ``end * w_i / total``; the chunk gives each source what it
    still needs by then (in proportion to the needs when a source tiny enough to be ahead needs nothing),
    by largest remainder. Exact integer arithmetic, so the last chunk ends with every source at w_i.
    """
    drawn = [0] * len(windows)
    end = 0
    while end < total:
        start, end = end, min(end + chunk, total)
        size = end - start
        need = [max(0, end * w - d * total) for w, d in zip(windows, drawn)]  # in units of 1/total windows
        scale = sum(need)  # >= size * total
        counts = [size * x // scale for x in need]
        remainders = [size * x % scale for x in need]
        for i in sorted(range(len(windows)), key=lambda i: -remainders[i])[: size - sum(counts)]:
            counts[i] += 1
        drawn = [d + c for d, c in zip(drawn, counts)]
        yield start, end, counts


class _EpochDraws:
    """One source's windows in draw order: epoch after epoch, each a seeded permutation of all windows."""

    def __init__(self, name: str, available: int, seed: int):
        self.name, self.available, self.seed = name, available, seed
        self.epoch, self.perm, self.offset = -1, None, 0

    def take(self, k: int) -> np.ndarray:
        parts = []
        while k > 0:
            if self.perm is None or self.offset == self.available:
                self.epoch += 1
                dtype = np.uint32 if self.available < 2**32 else np.int64  # half the memory of rng.permutation
                self.perm = np.arange(self.available, dtype=dtype)
                source_rng(self.seed, self.name, self.epoch).shuffle(self.perm)
                self.offset = 0
            n = min(k, self.available - self.offset)
            parts.append(self.perm[self.offset : self.offset + n].astype(np.int64))
            self.offset += n
            k -= n
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _seq_length_of(rows: list[MixRow]) -> int:
    lengths = {r.tokens // r.windows for r in rows if r.windows}
    if len(lengths) != 1:
        raise ValueError(f"rows must draw windows of one seq_length, got {sorted(lengths) or 'no windows'}")
    return lengths.pop()


def build_index(rows: list[MixRow], seed: int, path) -> int:
    """Write the sampling index for ``rows`` (and its ``.json`` beside it); returns its length N."""
    path = Path(path)
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    for r in rows:
        if r.windows < 0 or (r.windows and r.available_windows <= 0):
            raise ValueError(f"source {r.name}: {r.windows} windows drawn from {r.available_windows} available")
    seq_length = _seq_length_of(rows)
    windows = [r.windows for r in rows]
    total = sum(windows)
    draws = [_EpochDraws(r.name, r.available_windows, seed) for r in rows]
    ids_of = np.arange(len(rows), dtype=np.int64)

    # the index, then its .json (which says it is complete), each renamed into place when written
    with atomic_file(path) as partial, open(partial, "wb") as out:
        np.lib.format.write_array_header_1_0(
            out,
            {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int64)), "fortran_order": False, "shape": (total, 2)},
        )
        for chunk, (start, end, counts) in enumerate(_chunk_counts(windows, total, CHUNK)):
            ids = np.repeat(ids_of, counts)
            np.random.default_rng([seed % 2**64, _CHUNK_KEY, chunk]).shuffle(ids)
            block = np.empty((end - start, 2), dtype=np.int64)
            block[:, 0] = ids
            # the k-th position of source i in this chunk gets its k-th next window
            block[np.argsort(ids, kind="stable"), 1] = np.concatenate([d.take(c) for d, c in zip(draws, counts)])
            out.write(block.tobytes())
    meta = {
        "format": INDEX_FORMAT,
        "seed": seed,
        "seq_length": seq_length,
        "length": total,
        "chunk": CHUNK,
        "sources": [{"name": r.name, "windows": r.windows, "available_windows": r.available_windows} for r in rows],
    }
    write_text(index_meta_path(path), json.dumps(meta, indent=1) + "\n")
    logger.info("sampling index: %d windows of %d tokens from %d sources -> %s", total, seq_length, len(rows), path)
    return total


def read_index_meta(index_path: str | Path) -> dict:
    meta_path = index_meta_path(index_path)
    if not meta_path.is_file() or not Path(index_path).is_file():
        raise RecipeError(index_path, None, "no sampling index here (or its .json is missing): run the data step")
    return json.loads(meta_path.read_text(encoding="utf-8"))


def realised_shares(index_path: str | Path, names: list[str] | None = None, block: int = 1 << 20) -> dict[str, float]:
    """Each source's share of the positions actually in the index (read in blocks, not whole).

    ``names``, when given, must be the table's sources in order (a check that the index is the table's).
    """
    built_for = [s["name"] for s in read_index_meta(index_path)["sources"]]
    if names is not None and list(names) != built_for:
        raise ValueError(f"index {index_path} was built for sources {built_for}, not {list(names)}")
    names = built_for
    index = np.load(index_path, mmap_mode="r")
    counts = source_counts(index, 0, len(index), len(names), block)
    return {name: int(c) / max(1, len(index)) for name, c in zip(names, counts)}


def source_counts(index: np.ndarray, start: int, end: int, sources: int, block: int = 1 << 20) -> np.ndarray:
    """How many of the positions ``[start, end)`` of ``index`` each source gives (read in blocks, not whole)."""
    counts = np.zeros(sources, dtype=np.int64)
    for lo in range(max(0, start), min(end, len(index)), block):
        counts += np.bincount(index[lo : min(end, lo + block), 0], minlength=sources)
    return counts


class PackedStream(torch.utils.data.Dataset):
    """Windows of ``seq_length`` tokens in index order. Position p is the p-th training sequence.

    Nothing is mapped until first use, and maps are dropped when pickled, so each DataLoader worker opens
    its own. Shard sizes are checked against the index at construction (from ``stat``, cheap).
    """

    def __init__(self, index_path, source_dirs: dict[str, str | Path], seq_length: int, token_size: int = 2):
        self.index_path = Path(index_path)
        self.seq_length = seq_length
        self.dtype = _token_dtype(token_size)
        self.token_size = token_size
        meta = read_index_meta(self.index_path)
        if meta.get("format") != INDEX_FORMAT or meta["seq_length"] != seq_length:
            raise RecipeError(
                self.index_path,
                None,
                f"was built for windows of {meta.get('seq_length')} tokens "
                f"(format {meta.get('format')}), not {seq_length}: run the data step again",
            )
        self.names = [s["name"] for s in meta["sources"]]
        self.length = int(meta["length"])
        self.files: list[list[Path]] = []
        self.starts: list[np.ndarray] = []  # per source: first window number of each file (and the total)
        for source in meta["sources"]:
            name, files, counts = source["name"], [], []
            if source["windows"]:
                if name not in source_dirs:
                    raise RecipeError(
                        self.index_path,
                        None,
                        f"draws from source {name} but no folder was given "
                        f"for it (given: {', '.join(sorted(source_dirs)) or 'none'})",
                    )
                files = ds_files(source_dirs[name])
                counts = [_file_tokens(p, token_size) // seq_length for p in files]
                if sum(counts) != source["available_windows"]:
                    raise RecipeError(
                        source_dirs[name],
                        None,
                        f"has {sum(counts)} windows of {seq_length} tokens "
                        f"but the index {self.index_path} was built for {source['available_windows']}: "
                        "the shards changed; run the data step again",
                    )
            self.files.append(files)
            self.starts.append(np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]))
        self._index = None
        self._maps: OrderedDict = OrderedDict()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_index"], state["_maps"] = None, OrderedDict()  # maps are per process: reopened on first use
        return state

    def __len__(self) -> int:
        return self.length

    def _entry(self, position: int) -> tuple[int, int]:
        if not 0 <= position < self.length:
            raise IndexError(f"position {position} outside the stream of {self.length} windows")
        source, window = self._mapped_index()[position]
        return int(source), int(window)

    def _mapped_index(self) -> np.ndarray:
        if self._index is None:
            index = self.open_index()
            if index.shape != (self.length, 2):
                raise RecipeError(
                    self.index_path,
                    None,
                    f"holds {index.shape} entries, its .json says {self.length}: run the data step again",
                )
            self._index = index
        return self._index

    def source_counts(self, start: int, end: int) -> np.ndarray:
        """Windows each source gives to stream positions ``[start, end)``, in the order of ``names``."""
        return source_counts(self._mapped_index(), start, end, len(self.names))

    def open_index(self) -> np.ndarray:
        """The index, memory-mapped; a file cut short (a copy that did not finish) is named in one line."""
        try:
            return np.load(self.index_path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise RecipeError(
                self.index_path, None, f"cannot be read as a sampling index ({err}): run the data step again"
            ) from None

    def _shard(self, source: int, file: int) -> np.memmap:
        key = (source, file)
        shard = self._maps.get(key)
        if shard is None:
            shard = np.memmap(self.files[source][file], dtype=self.dtype, mode="r")
            self._maps[key] = shard
            if len(self._maps) > MAX_OPEN_SHARDS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        return shard

    def __getitem__(self, position: int) -> dict:
        source, window = self._entry(int(position))
        starts = self.starts[source]
        file = int(np.searchsorted(starts, window, side="right")) - 1
        offset = (window - int(starts[file])) * self.seq_length
        tokens = self._shard(source, file)[offset : offset + self.seq_length]
        return {"input_ids": np.asarray(tokens, dtype=np.int64)}

    def iterate(self, start: int = 0):
        """Items from position ``start`` on, in stream order (a resumed run passes its saved position)."""
        for position in range(start, self.length):
            yield self[position]

    def source_of(self, position) -> str:
        return self.names[self._entry(int(position))[0]]


def open_stream(data) -> PackedStream:
    """The data step's training stream (``data``: its :class:`aurora_m.layout.DatasetDir`): windows read from
    the token shards in the index's order. Both engines train on it."""
    mixture = read_json_or_none(data.mixture_json) or {}
    names = [s["name"] for s in mixture.get("sources", [])]
    return PackedStream(
        data.index,
        {n: data.source_tokens(n) for n in names},
        int(mixture.get("seq_length", 0)),
        int(mixture.get("token_size", 2)),
    )


def pack_heldout(texts, path: str | Path, tokenizer, seq_length: int, blocks: int, token_size: int = 2) -> dict:
    """Up to ``blocks`` windows of ``seq_length`` tokens packed from ``texts`` as the shards are (``tokenizer``
    ends each document with EOS; windows run across documents), saved as a (windows, seq_length) ``.npy``.

    Reading stops when the windows are full: memory is the windows plus one document, whatever the corpus.
    No file is written when not one window fills.
    """
    path = Path(path)
    need = blocks * seq_length
    out = np.empty(need, dtype=_token_dtype(token_size))
    filled = docs = 0
    for text in texts:
        if filled >= need:
            break
        ids = tokenizer.encode(text).ids
        take = min(len(ids), need - filled)
        out[filled : filled + take] = ids[:take]
        filled, docs = filled + take, docs + 1
    windows = filled // seq_length
    if windows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as partial, open(partial, "wb") as fh:
            np.save(fh, out[: windows * seq_length].reshape(windows, seq_length))
    return {"windows": windows, "documents": docs, "tokens": windows * seq_length}
