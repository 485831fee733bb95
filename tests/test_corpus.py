"""The pretraining corpus end to end (datatrove phases on the tiny twin's files): what each filter removed,
bad rows counted, shares realised, a killed build resumed to the same bytes, the data folder guarded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aurora_m.args import MixtureArguments, ModelArguments
from aurora_m.data.corpus import build_corpus
from aurora_m.data.stream import PackedStream
from aurora_m.errors import RecipeError
from aurora_m.layout import DatasetDir

ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = ROOT / "recipes" / "aurora-m-tiny" / "data"
LANGS = ("en", "fi", "hi", "ja", "vi", "code")
TOKENIZER = [str(TINY_DATA / f"{lang}.jsonl") for lang in LANGS]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mixture(**extra) -> list[dict]:
    return [{"name": lang, "path": str(TINY_DATA / f"{lang}.jsonl"), **extra} for lang in LANGS]


def build(out: Path, mix: list[dict], **keys) -> Path:
    args = MixtureArguments(
        mixture=mix, **{"seq_length": 64, "train_tokens": 64 * 400, "mixture_seed": 3, "max_epochs": 20, **keys}
    )
    return build_corpus(ModelArguments(tokenizer_train_files=TOKENIZER), args, out)


def removed_ids(data: DatasetDir, source: str, step: str) -> set[str]:
    import gzip

    out = set()
    for path in data.removed_by(source, step).glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            out |= {json.loads(line)["id"] for line in fh if line.strip()}
    return out


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> DatasetDir:
    out = tmp_path_factory.mktemp("corpus") / "data"
    return DatasetDir(build(out, mixture(), max_symbol_digit_ratio=0.2))


def test_every_planted_document_is_removed_by_its_filter_and_counted(tiny_corpus):
    report = json.loads(tiny_corpus.filter_report_json.read_text())
    by_source = {row["name"]: row for row in report["sources"]}
    for lang in LANGS:
        planted = {r["id"]: r["planted"] for r in rows(TINY_DATA / f"{lang}.jsonl") if "planted" in r}
        steps = {s["step"]: s for s in by_source[lang]["steps"]}
        for name in set(planted.values()) - {"pii"}:
            expected = {i for i, p in planted.items() if p == name}
            assert removed_ids(tiny_corpus, lang, name) == expected, (lang, name)
            assert steps[name]["removed_docs"] == len(expected), (lang, name)
            assert steps[name]["removed_tokens"] > 0
        # no good document is removed anywhere: every removal is a planted one
        removed = sum(s.get("removed_docs", 0) for s in by_source[lang]["steps"])
        assert removed == sum(1 for p in planted.values() if p != "pii"), lang
        assert by_source[lang]["minhash"]["removed_docs"] == 0
        good = sum(1 for r in rows(TINY_DATA / f"{lang}.jsonl") if "planted" not in r)
        assert by_source[lang]["kept_docs"] == good + sum(1 for p in planted.values() if p == "pii")
    # per language: the same numbers summed
    assert report["languages"]["fi"]["removed_by"]["language_id"]["docs"] == 1
    assert report["languages"]["code"]["removed_by"]["code_quality"]["docs"] == 4


def test_pii_is_anonymised_in_the_shards(tiny_corpus):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_corpus.tokenizer / "tokenizer.json"))
    text = "".join(
        tok.decode(np.fromfile(p, dtype="<u2").tolist(), skip_special_tokens=False)
        for p in sorted(tiny_corpus.source_tokens("en").glob("*.ds"))
    )
    assert "<EMAIL>" in text and "@example" not in text


def test_realised_shares_are_within_one_point_of_the_table(tiny_corpus):
    mix = json.loads(tiny_corpus.mixture_json.read_text())
    assert mix["tokens"] == 64 * 400 and mix["sequences"] == 400
    for source in mix["sources"]:
        assert abs(source["realised_share"] - source["share"]) <= 0.01, source
    stream = PackedStream(
        tiny_corpus.index,
        {s["name"]: tiny_corpus.source_tokens(s["name"]) for s in mix["sources"]},
        64,
        mix["token_size"],
    )
    counts = {}
    for p in range(len(stream)):
        counts[stream.source_of(p)] = counts.get(stream.source_of(p), 0) + 1
    for source in mix["sources"]:
        assert abs(counts[source["name"]] / len(stream) - source["share"]) <= 0.01


def test_code_is_rewritten_fill_in_the_middle_at_the_configured_rate(tiny_corpus):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_corpus.tokenizer / "tokenizer.json"))
    prefix = tok.token_to_id("<fim_prefix>")
    ids = np.concatenate([np.fromfile(p, dtype="<u2") for p in tiny_corpus.source_tokens("code").glob("*.ds")])
    docs = int((ids == tok.token_to_id("<|endoftext|>")).sum())
    assert 0.3 < (ids == prefix).sum() / docs < 0.7  # fim_rate 0.5 over ~60 documents
    prose = np.concatenate([np.fromfile(p, dtype="<u2") for p in tiny_corpus.source_tokens("en").glob("*.ds")])
    assert not (prose == prefix).any()


def test_bad_rows_are_counted_not_dropped_silently(tmp_path):
    good = [r for r in rows(TINY_DATA / "en.jsonl") if "planted" not in r]
    lines = [json.dumps(r).encode() for r in good]
    lines[3] = b'{"id": "bytes", "text": "caf\xe9 au lait"}'  # latin-1, not UTF-8
    lines[5] = b'{"id": "broken", "text": '  # cut short
    lines[7] = json.dumps({"id": "empty", "text": "  "}).encode()
    lines[9] = json.dumps({"id": "no-text", "body": "x"}).encode()
    lines[11] = json.dumps(["a", "list"]).encode()
    lines[13] = json.dumps({"id": "number", "text": 42}).encode()
    lines.append(json.dumps({"id": "huge", "text": "word " * 400_000}).encode())  # 2 MB > max_doc_chars
    path = tmp_path / "en.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    mix = [{"name": "en", "path": str(path)}, {"name": "code", "path": str(TINY_DATA / "code.jsonl")}]
    data = DatasetDir(build(tmp_path / "data", mix, max_doc_chars=1_000_000))
    en = json.loads(data.filter_report_json.read_text())["sources"][0]
    assert en["rows_unusable"] == {
        "not_utf8": 1,
        "invalid_json": 1,
        "empty": 1,
        "missing_field": 1,
        "not_object": 1,
        "not_text": 1,
    }
    assert en["blank_lines"] == 1
    assert en["steps"][0] == {
        "step": "length_cap",
        "removed_docs": 1,
        "removed_tokens": None,
        "reasons": {"too_long": 1},
        "note": "not tokenized (longer than max_doc_chars)",
    }
    assert en["docs_in"] == len(lines) and en["kept_docs"] == len(good) - 6


def test_a_profane_document_on_the_held_out_side_is_filtered_there_too(tmp_path):
    """The held-out split comes after the filters: Korean's planted profane paragraph, whose hash puts it in the
    held-out quarter, is removed by the toxic-word filter (counted as held-out in the report) and never reaches
    the held-out documents the training run evaluates on; the clean held-out paragraphs do."""
    from aurora_m.data.sources import in_heldout

    path = ROOT / "tests" / "fixtures" / "languages" / "data" / "ko.jsonl"
    docs = rows(path)
    (planted,) = [r for r in docs if r.get("planted") == "toxic_words"]
    held = [r["text"] for r in docs if in_heldout(r["text"], 0.25) and r is not planted]
    assert in_heldout(planted["text"], 0.25) and len(held) == 2  # the case under test, from the text's hash
    mix = [
        {"name": "ko", "path": str(path), "holdout_fraction": 0.25},
        {"name": "code", "path": str(TINY_DATA / "code.jsonl")},
    ]
    data = DatasetDir(build(tmp_path / "data", mix, heldout_blocks=8, train_tokens=64 * 100))
    ko = json.loads(data.filter_report_json.read_text())["sources"][0]
    steps = {s["step"]: s for s in ko["steps"]}
    assert steps["toxic_words"]["removed_docs"] == 1 and steps["toxic_words"]["removed_heldout_docs"] == 1
    assert steps["language_id"]["removed_heldout_docs"] == 0
    assert steps["held_out"]["set_aside_docs"] == 2  # the clean ones only
    assert removed_ids(data, "ko", "toxic_words") == {planted["id"]}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(data.tokenizer)
    flat = np.load(data.heldout_tokens("ko")).reshape(-1)  # what held-out loss is measured on
    ends = np.flatnonzero(flat == tokenizer.eos_token_id)
    windows = [tokenizer.decode(ids[:-1].tolist()) for ids in np.split(flat, ends + 1)[: len(ends)]]
    assert windows and set(windows) <= set(held), windows  # clean held-out paragraphs, the planted one not
    assert [s["step"] for s in ko["steps"]][-1] == "held_out"  # after every filter


def test_a_truncated_parquet_file_is_one_line_naming_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "en.parquet"
    pq.write_table(pa.table({"text": [r["text"] for r in rows(TINY_DATA / "en.jsonl")]}), path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(RecipeError, match="en.parquet"):
        build(tmp_path / "data", [{"name": "en", "path": str(path)}])
    assert not (tmp_path / "data").exists()


def test_a_budget_beyond_max_epochs_is_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"mixture\[en\]"):
        build(tmp_path / "data", mixture(), max_epochs=1.0, train_tokens=64 * 4000)
    assert not (tmp_path / "data").exists()


def test_a_partial_folder_holding_foreign_files_is_refused(tmp_path):
    partial = DatasetDir(tmp_path / "data").partial.root
    partial.mkdir(parents=True)
    (partial / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="did not write"):
        build(tmp_path / "data", mixture())
    assert (partial / "notes.txt").read_text() == "mine"


KILL_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_corpus import build, mixture
if __name__ == "__main__":
    build(Path(sys.argv[1]), mixture())
"""


def start_build_until(tmp_path: Path, reached) -> tuple[subprocess.Popen, Path, DatasetDir]:
    """A build of the tiny mixture in its own process group, returned once ``reached(partial)`` holds."""
    script = tmp_path / "build.py"
    script.write_text(KILL_SCRIPT.format(tests=str(ROOT / "tests")))
    out = tmp_path / "data"
    partial = DatasetDir(out).partial
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not reached(partial):
        time.sleep(0.05)
    return proc, out, partial


def test_a_killed_build_resumes_to_the_same_bytes(tmp_path, tiny_corpus):
    """Killed during tokenization, then run again: finished datatrove tasks are skipped, the result is
    byte-identical to an uninterrupted build (shards and index)."""
    proc, out, partial = start_build_until(tmp_path, lambda p: (p.logs / "tokenize").exists())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    completions = list((partial.logs / "clean" / "completions").glob("*"))
    assert completions, "the kill came before any task finished"
    reference = DatasetDir(build(tmp_path / "reference", mixture()))
    resumed = DatasetDir(build(out, mixture()))
    assert resumed.index.read_bytes() == reference.index.read_bytes()
    for lang in LANGS:
        ours = sorted(resumed.source_tokens(lang).glob("*.ds"))
        theirs = sorted(reference.source_tokens(lang).glob("*.ds"))
        assert [p.read_bytes() for p in ours] == [p.read_bytes() for p in theirs], lang
    assert not partial.root.exists()


def test_other_keys_restart_a_partial_build(tmp_path):
    out = tmp_path / "data"
    partial = DatasetDir(out).partial
    partial.root.mkdir(parents=True)
    (partial.root / "build.json").write_text(json.dumps({"digest": "other keys"}))
    (partial.root / "logs" / "clean" / "completions").mkdir(parents=True)  # the other build's finished task
    (partial.root / "logs" / "clean" / "completions" / "00000").write_text("")
    build(out, mixture())
    assert not partial.root.exists() and DatasetDir(out).index.is_file()


def test_the_data_step_of_a_continued_stage_runs_first_on_a_cpu_node(tmp_path):
    """CAT's data step needs neither CAP's model (the tokenizer comes from the chain's first stage) nor a
    GPU (bf16 is a trainer key): it runs on a CPU node before anything has trained."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aurora_m.cli",
            "data",
            "recipes/aurora-m-tiny",
            "--stage",
            "cat",
            "--output-dir",
            str(tmp_path / "run"),
            "--bf16",
            "true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = DatasetDir(tmp_path / "run" / "cat" / "data")
    assert data.mixture_json.is_file() and data.filter_report_json.is_file() and data.mixture_png.is_file()
    assert not (tmp_path / "run" / "cap" / "model").exists()
    names = {s["name"] for s in json.loads(data.mixture_json.read_text())["sources"]}
    assert "redteam" in names


def test_a_source_left_empty_says_why_in_one_line(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "body": "no text column here"}) + "\n" for i in range(5)))
    with pytest.raises(RecipeError, match=r"mixture\[en\].*5 rows read, none kept \(missing_field 5\)"):
        build(tmp_path / "data", [{"name": "en", "path": str(path)}, *mixture()[1:]])


def test_a_file_of_the_users_in_the_data_folder_is_never_deleted(tmp_path, tiny_corpus):
    import shutil

    out = tmp_path / "data"
    shutil.copytree(tiny_corpus.root, out)
    (out / "analysis.ipynb").write_text("mine")
    with pytest.raises(RecipeError, match="did not write.*analysis.ipynb"):
        build(out, mixture(), max_symbol_digit_ratio=0.2, mixture_seed=4)
    assert (out / "analysis.ipynb").read_text() == "mine"


def test_killing_only_the_main_process_leaves_nothing_that_blocks_the_next_build(tmp_path):
    """datatrove's Manager server outlives a killed parent; it must not hold the build's lock."""
    proc, out, _ = start_build_until(tmp_path, lambda p: (p.logs / "clean" / "completions").exists())
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its helpers are orphaned, not killed
        proc.wait()
        assert DatasetDir(build(out, mixture())).index.is_file()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_folder_of_gzipped_json_lines_is_a_source_and_a_mixed_folder_is_refused(tmp_path):
    import gzip

    folder = tmp_path / "en"
    folder.mkdir()
    lines = (TINY_DATA / "en.jsonl").read_text(encoding="utf-8").splitlines()
    half = len(lines) // 2
    for i, part in enumerate((lines[:half], lines[half:])):
        with gzip.open(folder / f"part-{i}.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write("\ufeff" * (i == 0) + "\n".join(part) + "\n")  # the first with a byte-order mark
    mix = [{"name": "en", "path": str(folder)}, *mixture()[1:]]
    data = DatasetDir(build(tmp_path / "data", mix))
    en = json.loads(data.filter_report_json.read_text())["sources"][0]
    assert en["docs_in"] == len(lines) and en["rows_unusable"] == {}
    (folder / "notes.parquet").write_bytes(b"PAR1")
    with pytest.raises(RecipeError, match=r"mixture\[0\]\.path: one kind of data file"):
        build(tmp_path / "data2", mix)
