"""The plan's data-step figures against a real data step: measured on one corpus, predicted for a corpus four
times its size, then that corpus built for real. Time is the pipeline steps' seconds (datatrove's own stats
per task, one worker: the work, not process start-up, which a cluster's hours dwarf); disk is the token shards."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from aurora_m.data.corpus import build_corpus
from aurora_m.plan.data_cost import data_cost

from conftest import ROOT

SMALL_MB = 0.5


def benchmark_module():
    spec = importlib.util.spec_from_file_location("data_throughput", ROOT / "benchmarks" / "data_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def work_seconds(logs: Path) -> float:
    """Seconds spent in pipeline steps, summed over every task of every phase (datatrove's per-task stats)."""
    files = [*logs.glob("*/by_source/*/*.json"), *logs.glob("dedup/*/stats/*.json")]
    total = 0.0
    for f in files:
        for step in json.loads(f.read_text()):
            t = step.get("time_stats") or {}
            total += t.get("total", 0.0) if isinstance(t, dict) else float(t)
    return total


def build(bench, folders: dict, out: Path):
    job = {
        "folders": {k: str(v) for k, v in folders.items()},
        "budget": 128 * 50,
        "workers": 1,
        "tasks": 1,
        "file_mb": 64,
    }
    model_args, mix_args = bench._args(job)
    root = build_corpus(model_args, mix_args, out)
    shards = {name: sum(f.stat().st_size for f in (root / "tokens" / name).rglob("*.ds")) for name in folders}
    return mix_args, work_seconds(root / "logs"), shards


def test_data_step_time_and_disk_predicted_for_a_corpus_four_times_larger(tmp_path):
    bench = benchmark_module()
    small = bench.make_corpus(tmp_path / "small", SMALL_MB, 1, seed=0)
    large = bench.make_corpus(tmp_path / "large", 4 * SMALL_MB, 1, seed=1)
    # the estimate's corpus built twice, the faster taken: a busy machine only ever adds seconds to a step
    runs = [build(bench, small, tmp_path / f"out-small-{i}") for i in range(2)]
    _, seconds, shards = min(runs, key=lambda run: run[1])
    read = {name: sum(f.stat().st_size for f in folder.glob("*.jsonl")) for name, folder in small.items()}
    assert seconds > 0 and all(shards.values())
    # what a rehearsal of the small corpus measured: bytes read per token kept, bytes per core-second
    measured = {
        "cap": {
            name: {
                "bytes_per_token": read[name] / (shards[name] / 2),
                "keep": 1.0,
                "bytes_per_core_second": sum(read.values()) / seconds,
            }
            for name in small
        }
    }
    large_args, large_seconds, large_shards = build(bench, large, tmp_path / "out-large")
    predicted = data_cost("cap", large_args, 4096, measured)
    assert abs(predicted.core_hours * 3600 / large_seconds - 1) < 0.25, (predicted.core_hours * 3600, large_seconds)
    assert abs(predicted.shard_bytes / sum(large_shards.values()) - 1) < 0.25


def test_a_rehearsal_report_gives_each_source_its_measured_figures():
    """The fields of `aurora-m rehearse`'s rehearsal.json the plan reads (aurora_m/rehearsal/report.py's rows)."""
    from aurora_m.plan.data_cost import read_rehearsal

    report = {
        "sources": [
            {
                "stage": "cap",
                "name": "web-en",
                "bytes_per_token": 4.0,
                "kept_after": {"read": 200, "quality": 150},
                "clean_seconds": 2.0,
                "bytes_read": 1000,
                "text_bytes": 800,
            },
            {"stage": "cap", "name": "code", "bytes_per_token": None, "kept_after": {}},
        ],
        "full_size": {"sources": [{"stage": "cap", "source": "web-en", "bytes_to_read": 10**12}]},
    }
    figures = read_rehearsal(report)
    assert figures["cap"]["web-en"] == {
        "bytes_per_token": 4.0,
        "keep": 0.75,
        "bytes_per_core_second": 500.0,
        "text_share": 0.8,
        "bytes_to_read": 10**12,
    }
    assert figures["cap"]["code"] == {}  # nothing measured: the plan falls back to the defaults, and says so
