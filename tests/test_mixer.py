"""The mixer's table, the sampling index and the memory-mapped stream (fake .ds shards, no datatrove)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

from aurora_m.data.mixer import MixRow, SourceSize, mixture_table, resolve_mixture
from aurora_m.data.stream import CHUNK, PackedStream, build_index, ds_token_counts, realised_shares, source_windows
from aurora_m.errors import RecipeError

from conftest import ROOT

EOS = 0


def size(name, windows, seq=10, **kw):
    return SourceSize(name=name, tokens=windows * seq, windows=windows, **kw)


def by_name(rows):
    return {r.name: r for r in rows}


# --- resolution -----------------------------------------------------------------------------------------------------


def test_tokens_replay_and_weights_fill_the_budget_exactly():
    sizes = [
        size("en", 30_000, replay=True),
        size("code", 10_000, replay=True),
        size("fi", 5_000, tokens_requested=1_000),
        size("hi", 5_000, weight=3.0),
        size("ja", 5_000, weight=1.0),
    ]
    rows = by_name(resolve_mixture(sizes, 10_000 + 7, 10, replay_share=0.2))  # 7 tokens: less than a window
    # W = 1000: replay 200 by natural size (3:1), fi 100 windows, the other 700 by weight 3:1
    assert {n: r.windows for n, r in rows.items()} == {"en": 150, "code": 50, "fi": 100, "hi": 525, "ja": 175}
    assert {n: r.rule for n, r in rows.items()} == {
        "en": "replay",
        "code": "replay",
        "fi": "tokens",
        "hi": "weight",
        "ja": "weight",
    }
    assert rows["hi"].tokens == 5250 and rows["hi"].share == pytest.approx(0.525)
    assert rows["fi"].epochs == pytest.approx(100 / 5000) and rows["fi"].available_tokens == 50_000


def test_unset_weights_count_as_one_and_remainders_go_to_the_largest():
    rows = resolve_mixture([size("a", 100), size("b", 100), size("c", 100, weight=1.0)], 100 * 10, 10)
    assert [r.windows for r in rows] == [34, 33, 33]  # 33.33 each: the extra window goes to the first in order
    assert sum(r.windows for r in rows) == 100


def test_temperature_matches_a_hand_computation():
    sizes = [size("en", 900_000), size("fi", 100_000)]
    # T = 2: p ∝ sqrt(n): sqrt(9e6) : sqrt(1e6) = 3 : 1
    assert [r.windows for r in resolve_mixture(sizes, 1_000_000, 10, temperature=2.0)] == [75_000, 25_000]
    # T = 1: natural proportions
    assert [r.windows for r in resolve_mixture(sizes, 1_000_000, 10, temperature=1.0)] == [90_000, 10_000]
    # T = 3 over three sources, by hand: n^(1/3) = 20, 10, 5 (n = 8000, 1000, 125 tokens) -> 4/7, 2/7, 1/7 of 100
    three = [SourceSize("a", 8000, 800), SourceSize("b", 1000, 100), SourceSize("c", 125, 12)]
    rows = resolve_mixture(three, 1000, 10, temperature=3.0, max_epochs=1000)
    assert [r.windows for r in rows] == [57, 29, 14]  # 57.14, 28.57, 14.29: the one spare window to b
    assert {r.rule for r in rows} == {"temperature"}


def test_only_token_budgets_split_the_stage_in_their_proportions():
    rows = resolve_mixture([size("a", 100, tokens_requested=333), size("b", 100, tokens_requested=667)], 1000, 10)
    assert [r.windows for r in rows] == [33, 67] and sum(r.windows for r in rows) == 100


def test_a_per_source_max_epochs_overrides_the_stage():
    sizes = [size("en", 1000, weight=10.0), size("fi", 10, weight=1.0, max_epochs=10.0)]
    rows = by_name(resolve_mixture(sizes, 1100 * 10, 10, max_epochs=1.0))
    assert rows["en"].epochs == 1.0 and rows["fi"].epochs == 10.0  # exactly at both caps: allowed
    sizes[1].max_epochs = None
    with pytest.raises(RecipeError) as caught:
        resolve_mixture(sizes, 1100 * 10, 10, max_epochs=1.0)
    assert caught.value.key == "mixture[fi].max_epochs" and "10.00 epochs" in caught.value.message


@pytest.mark.parametrize(
    "kwargs,sizes,key,words",
    [
        ({}, [size("en", 1000), size("fi", 1000, tokens_requested=20_000)], "mixture[fi].tokens", ["20,000"]),
        ({}, [size("en", 1000, tokens_requested=6000), size("fi", 1000, tokens_requested=6000)], "train_tokens", []),
        ({"replay_share": 1.0}, [size("en", 1000, replay=True), size("fi", 1000)], "replay_share", ["[0, 1)"]),
        ({"replay_share": -0.1}, [size("en", 1000, replay=True), size("fi", 1000)], "replay_share", []),
        ({"replay_share": 0.1}, [size("en", 1000), size("fi", 1000)], "replay_share", ["replay: true"]),
        ({}, [size("en", 1000), size("vi", 0, tokens_requested=100)], "mixture[vi].tokens", ["no full window"]),
        ({}, [size("en", 1000), SourceSize("vi", 5, 0, weight=1.0)], "mixture[vi].weight", ["no full window"]),
        ({"temperature": 0.0}, [size("en", 1000)], "temperature", []),
        ({"temperature": -1.0}, [size("en", 1000)], "temperature", []),
        (
            {"temperature": 2.0},
            [size("en", 1000), size("fi", 1000, weight=2.0)],
            "mixture[fi].weight",
            ["temperature"],
        ),
        (
            {},
            [size("en", 1000), size("code", 100)],
            "mixture[code].max_epochs",
            [
                "5.00 epochs",
                "1,000 available tokens",
                "at most 4",
                "mixture[code].weight",
                "train_tokens",
                "mixture[code].max_epochs",
            ],
        ),
        (
            {},
            [size("en", 1000), size("code", 300, max_epochs=1.5)],
            "mixture[code].max_epochs",
            ["1.67 epochs", "at most 1.5"],
        ),
    ],
)
def test_each_recipe_error_names_its_key(kwargs, sizes, key, words):
    with pytest.raises(RecipeError) as caught:
        resolve_mixture(sizes, 10_000, 10, config_file="cap.yaml", **kwargs)
    assert caught.value.key == key and caught.value.file == "cap.yaml"
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in caught.value.message, (word, caught.value.message)


def test_budget_smaller_than_a_window_is_refused():
    with pytest.raises(RecipeError, match="train_tokens"):
        resolve_mixture([size("en", 10)], 9, 10)


def test_the_table_prints_every_source_and_the_total():
    rows = resolve_mixture([size("en", 1000), size("fi", 1000, weight=3.0)], 10_000, 10)
    lines = mixture_table(rows).splitlines()
    assert lines[0].split() == ["source", "rule", "share", "%", "tokens", "epochs", "available"]
    assert lines[2].split() == ["en", "weight", "25.00", "2,500", "0.25", "10,000"]
    assert lines[3].split() == ["fi", "weight", "75.00", "7,500", "0.75", "10,000"]
    assert lines[-1].split() == ["total", "100.00", "10,000", "20,000"]


# --- the index ------------------------------------------------------------------------------------------------------


def rows_for(windows_and_available: dict[str, tuple[int, int]], seq=8) -> list[MixRow]:
    total = sum(w for w, _ in windows_and_available.values())
    return [
        MixRow(
            name=n,
            rule="weight",
            share=w / total,
            windows=w,
            tokens=w * seq,
            epochs=w / a,
            available_tokens=a * seq,
            available_windows=a,
        )
        for n, (w, a) in windows_and_available.items()
    ]


def per_source_draws(index: np.ndarray, source: int) -> np.ndarray:
    return index[index[:, 0] == source, 1]


def test_realised_shares_follow_the_table_overall_and_in_every_chunk(tmp_path):
    plan = {"en": (180_000, 90_000), "fi": (60_000, 60_000), "code": (55_000, 30_000), "tiny": (300, 7)}
    rows = rows_for(plan)
    n = build_index(rows, seed=3, path=tmp_path / "index.npy")
    assert n == sum(w for w, _ in plan.values())
    index = np.load(tmp_path / "index.npy")
    assert index.shape == (n, 2) and index.dtype == np.int64
    shares = realised_shares(tmp_path / "index.npy", [r.name for r in rows])
    assert shares == realised_shares(tmp_path / "index.npy", block=1000)
    with pytest.raises(ValueError, match="built for sources"):
        realised_shares(tmp_path / "index.npy", ["fi", "en", "code", "tiny"])
    for i, row in enumerate(rows):
        assert (index[:, 0] == i).sum() == row.windows  # exact, not only within 1pp
        assert abs(shares[row.name] - row.share) < 0.01
    starts = range(0, n, CHUNK)
    assert len(starts) >= 4
    for start in starts:
        chunk = index[start : start + CHUNK, 0]
        counts = np.bincount(chunk, minlength=len(rows))
        for i, row in enumerate(rows):
            assert abs(counts[i] - len(chunk) * row.share) <= 2  # two windows: far inside 1pp of 65,536
            if len(chunk) == CHUNK:
                assert abs(counts[i] / len(chunk) - row.share) < 0.01
    # interleaved, not blocked: every full chunk holds every big source, in no fixed pattern
    assert len({tuple(index[s : s + 32, 0]) for s in range(0, CHUNK, 32)}) > 1000


def test_epochs_repeat_every_window_before_any_repeats_twice(tmp_path):
    plan = {"a": (2 * 1000 + 250, 1000), "b": (700, 3000)}
    build_index(rows_for(plan), seed=11, path=tmp_path / "index.npy")
    index = np.load(tmp_path / "index.npy")
    a = per_source_draws(index, 0)
    assert sorted(a[:1000]) == list(range(1000)) and sorted(a[1000:2000]) == list(range(1000))
    assert len(set(a[2000:])) == 250  # the partial third epoch: distinct windows
    assert list(a[:1000]) != list(a[1000:2000])  # each epoch its own order
    assert list(a[:50]) != list(range(50))  # shuffled within the source
    b = per_source_draws(index, 1)
    assert len(set(b)) == 700 and b.max() < 3000  # less than an epoch: no repeats at all


def test_the_index_is_byte_identical_for_the_same_seed(tmp_path):
    rows = rows_for({"en": (100_000, 50_000), "fi": (40_000, 50_000)})
    build_index(rows, seed=5, path=tmp_path / "one.npy")
    build_index(rows, seed=5, path=tmp_path / "two.npy")
    build_index(rows, seed=6, path=tmp_path / "other.npy")
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "two.npy").read_bytes()
    # and in another process (as after a restart), where Python's own hash() of the names would differ
    script = (
        "import sys, pickle; from aurora_m.data.stream import build_index; "
        "build_index(pickle.loads(bytes.fromhex(sys.argv[1])), 5, sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", script, pickle.dumps(rows).hex(), str(tmp_path / "again.npy")],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "123"},
        timeout=120,
    )
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "again.npy").read_bytes()
    (tmp_path / "again.npy").unlink()
    (tmp_path / "again.npy.json").unlink()
    assert (tmp_path / "one.npy").read_bytes() != (tmp_path / "other.npy").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # nothing half-written left behind
        f"{name}{suffix}" for name in ("one.npy", "two.npy", "other.npy") for suffix in ("", ".json")
    )


def test_building_5m_positions_keeps_memory_bounded(tmp_path):
    rows = rows_for({"en": (2_500_000, 600_000), "fi": (1_500_000, 300_000), "code": (1_000_000, 400_000)})
    tracemalloc.start()
    try:
        n = build_index(rows, seed=0, path=tmp_path / "index.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 5_000_000
    whole_index_permuted_twice = 2 * n * 8  # 80 MB: what np.random.permutation over the whole index would hold
    assert peak < whole_index_permuted_twice / 2, f"peak {peak / 2**20:.1f} MiB"  # measured: ~10 MiB


# --- the stream -----------------------------------------------------------------------------------------------------


SEQ = 16


def write_source(folder, file_lengths, seed, token_size=2):
    """Shards of documents (random ids, each followed by EOS); returns the files' token arrays in window order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if token_size == 2 else np.uint32
    arrays = []
    for i, length in enumerate(file_lengths):
        tokens = rng.integers(1, 60_000 if token_size == 2 else 1_000_000, size=length).astype(dtype)
        tokens[rng.random(length) < 0.1] = EOS  # document ends
        tokens[-1] = EOS
        tokens.tofile(folder / f"{i:05d}_tokens.ds")
        (folder / f"{i:05d}_tokens.ds.index").write_bytes(b"\0" * 64)  # datatrove's side files: not tokens
        (folder / f"{i:05d}_tokens.ds.metadata").write_text("tok|2\n")
        arrays.append(tokens)
    return arrays


def expected_windows(arrays, seq=SEQ):
    return [a[k * seq : (k + 1) * seq] for a in arrays for k in range(len(a) // seq)]


@pytest.fixture()
def stream_setup(tmp_path):
    en = write_source(tmp_path / "en", [100 * SEQ + 5, 3, 37 * SEQ], seed=1)  # tails and a file under a window
    fi = write_source(tmp_path / "fi", [20 * SEQ + 15], seed=2)
    assert source_windows(tmp_path / "en", SEQ) == (137 * SEQ + 8, 137)
    assert ds_token_counts(tmp_path / "en") == {
        "00000_tokens.ds": 100 * SEQ + 5,
        "00001_tokens.ds": 3,
        "00002_tokens.ds": 37 * SEQ,
    }
    assert ds_token_counts(tmp_path / "missing") == {}
    rows = resolve_mixture(
        [SourceSize("en", 137 * SEQ + 8, 137), SourceSize("fi", 20 * SEQ + 15, 20, weight=0.5)],
        300 * SEQ,
        SEQ,
        max_epochs=10,
    )
    n = build_index(rows, seed=7, path=tmp_path / "index.npy")
    dirs = {"en": tmp_path / "en", "fi": tmp_path / "fi"}
    return tmp_path, rows, n, dirs, {"en": expected_windows(en), "fi": expected_windows(fi)}


def test_windows_come_whole_from_one_file_in_window_order(stream_setup):
    tmp_path, rows, n, dirs, windows = stream_setup
    stream = PackedStream(tmp_path / "index.npy", dirs, SEQ)
    index = np.load(tmp_path / "index.npy")
    assert len(stream) == n == 300
    for position in range(n):
        item = stream[position]["input_ids"]
        assert item.dtype == np.int64 and item.shape == (SEQ,)
        source = stream.source_of(position)
        assert source == rows[index[position, 0]].name
        assert np.array_equal(item, windows[source][index[position, 1]])  # window k = k-th slice of its file
    with pytest.raises(IndexError):
        stream[n]


def test_a_resumed_stream_equals_the_tail_of_an_uninterrupted_one(stream_setup):
    tmp_path, _, n, dirs, _ = stream_setup
    whole = [item["input_ids"] for item in PackedStream(tmp_path / "index.npy", dirs, SEQ).iterate()]
    assert len(whole) == n
    for start in (0, 1, 137, 255, n - 1, n):
        fresh = PackedStream(tmp_path / "index.npy", dirs, SEQ)  # as after a restart
        tail = [item["input_ids"] for item in fresh.iterate(start=start)]
        assert len(tail) == n - start
        assert all(np.array_equal(a, b) for a, b in zip(tail, whole[start:]))


def test_the_stream_survives_pickling_into_dataloader_workers(stream_setup):
    tmp_path, _, n, dirs, _ = stream_setup
    stream = PackedStream(tmp_path / "index.npy", dirs, SEQ)
    first = stream[0]["input_ids"]  # maps now open in this process
    copy = pickle.loads(pickle.dumps(stream))
    assert copy._index is None and not copy._maps and len(pickle.dumps(stream)) < 10_000
    assert np.array_equal(copy[0]["input_ids"], first)
    loader = torch.utils.data.DataLoader(stream, batch_size=8, num_workers=2)
    batches = torch.cat([b["input_ids"] for b in loader])
    assert batches.shape == (n, SEQ)
    assert torch.equal(batches, torch.stack([torch.from_numpy(i["input_ids"]) for i in stream.iterate()]))


def test_changed_shards_and_wrong_settings_are_refused(stream_setup):
    tmp_path, _, _, dirs, _ = stream_setup
    with pytest.raises(RecipeError, match="windows of 16 tokens .*not 32"):
        PackedStream(tmp_path / "index.npy", dirs, 2 * SEQ)
    with pytest.raises(RecipeError, match="no folder was given for it"):
        PackedStream(tmp_path / "index.npy", {"en": dirs["en"]}, SEQ)
    extra = np.ones(SEQ, dtype=np.uint16)
    extra.tofile(dirs["fi"] / "00001_tokens.ds")
    with pytest.raises(RecipeError, match="the shards changed"):
        PackedStream(tmp_path / "index.npy", dirs, SEQ)
    (dirs["fi"] / "00001_tokens.ds").write_bytes(b"\1\2\3")
    with pytest.raises(RecipeError, match="truncated"):
        PackedStream(tmp_path / "index.npy", dirs, SEQ)


def test_uint32_shards(tmp_path):
    arrays = write_source(tmp_path / "big", [10 * SEQ, 4 * SEQ + 1], seed=4, token_size=4)
    assert source_windows(tmp_path / "big", SEQ, token_size=4) == (14 * SEQ + 1, 14)
    rows = resolve_mixture([SourceSize("big", 14 * SEQ + 1, 14)], 30 * SEQ, SEQ)
    build_index(rows, seed=1, path=tmp_path / "index.npy")
    stream = PackedStream(tmp_path / "index.npy", {"big": tmp_path / "big"}, SEQ, token_size=4)
    index = np.load(tmp_path / "index.npy")
    windows = expected_windows(arrays)
    assert all(np.array_equal(stream[p]["input_ids"], windows[index[p, 1]]) for p in range(len(stream)))
    assert max(int(stream[p]["input_ids"].max()) for p in range(len(stream))) > 65_535
