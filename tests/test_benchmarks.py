"""The training benchmarks run and end with their contract line (tiny settings: seconds, not minutes)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from warm import run

from conftest import OFFLINE, ROOT

BENCHMARKS = ROOT / "benchmarks"
FLOAT = r"[0-9]+(?:\.[0-9]+)?"


def run_benchmark(name: str, *args: str, timeout: int = 120) -> list[str]:
    result = run(
        [sys.executable, str(BENCHMARKS / name), *args], cwd=ROOT, timeout=timeout, env={**os.environ, **OFFLINE}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_overhead_times_three_engines_on_the_same_computation(tmp_path):
    """Ours, a plain Trainer and a bare loop: same init, data and optimizer, so the losses agree exactly.

    The dataset is synthetic, in the data step's layout (the default builds the tiny CAP's, ~10 s more):
    the tiny recipe's 240 steps of 2 sequences."""
    data = load("gpu_mfu").write_synthetic_dataset(tmp_path / "data", vocab=512, seq_length=128, sequences=480)
    lines = run_benchmark(
        "train_overhead.py",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--n-embd",
        "64",
        "--n-layer",
        "2",
        "--n-head",
        "4",
        "--batch-size",
        "2",
        "--dataset-dir",
        str(data.root),
    )
    assert re.fullmatch(rf"overhead_ratio: {FLOAT}", lines[-1]), lines[-1]
    assert float(lines[-1].split()[-1]) > 0
    assert re.fullmatch(r"overhead_ms_per_step: -?[0-9]+\.[0-9]", lines[-2]), lines[-2]
    spread = next(line for line in lines if line.startswith("ours - bare per step: median "))
    assert re.search(r"range [-+][0-9.]+ to [-+][0-9.]+, quartiles .*, 2 steps\); step ratio range", spread), spread
    for key in ("trainer_over_bare", "ours_over_trainer"):
        assert any(re.fullmatch(rf"{key}: {FLOAT}", line) for line in lines), (key, lines)
    for engine in ("ours", "trainer", "bare"):
        assert any(re.match(rf"{engine}\s*:\s*[0-9,]+ tokens/s", line) for line in lines), (engine, lines)
    agreement = [line for line in lines if line.startswith("losses ")]
    assert len(agreement) == 2 and all(line.endswith("(agree)") for line in agreement), agreement


def test_train_overhead_refuses_an_unknown_engine():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_overhead.py"), "--engines", "ours,nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode != 0 and "unknown nope" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the real run is tested below")
def test_gpu_mfu_skips_without_cuda_with_the_reason():
    assert run_benchmark("gpu_mfu.py")[-1] == "skipped: no CUDA device (torch.cuda.is_available() is False)"


def test_gpu_mfu_path_runs_on_cpu_against_a_stated_peak():
    """The same engine path (synthetic data in the data step's layout, build_trainer, bf16) on the CPU."""
    lines = run_benchmark(
        "gpu_mfu.py",
        "--cpu",
        "--peak-tflops",
        "1",
        "--n-embd",
        "64",
        "--n-layer",
        "2",
        "--n-head",
        "4",
        "--vocab",
        "512",
        "--seq-length",
        "128",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
    )
    assert re.fullmatch(rf"mfu: {FLOAT}", lines[-1]), lines[-1]
    assert 0 < float(lines[-1].split()[-1]) < 1
    assert any(line.startswith("tokens/s: ") for line in lines), lines
    assert any("parameters in torch.bfloat16" in line for line in lines), lines


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_mfu_on_the_gpu():
    lines = run_benchmark(
        "gpu_mfu.py",
        "--n-embd",
        "256",
        "--n-layer",
        "2",
        "--n-head",
        "4",
        "--seq-length",
        "512",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--peak-tflops",
        "100",
        timeout=300,
    )
    assert re.fullmatch(rf"mfu: {FLOAT}", lines[-1]), lines[-1]


def test_flops_per_token_is_palms_formula():
    gpu_mfu = load("gpu_mfu")
    # 1,000 parameters of which 200 embeddings; 2 layers x 16 wide x 8 positions of attention
    assert gpu_mfu.flops_per_token(1000, 200, 2, 16, 8) == 6 * 800 + 12 * 2 * 16 * 8


def test_peak_table_matches_device_names():
    gpu_mfu = load("gpu_mfu")
    assert gpu_mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_mfu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_mfu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_mfu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_mfu.peak_tflops("Some Future GPU") is None


def test_leakage_throughput_checks_its_plants_and_ends_with_its_figures():
    lines = run_benchmark("leakage_throughput.py", "--mb", "0.3", "--prompts", "300")
    assert re.fullmatch(rf"core_hours_cap: {FLOAT}", lines[-1]), lines[-1]
    for key in ("mb_per_s", "ratio_vs_bare"):
        assert any(re.fullmatch(rf"{key}: {FLOAT}", line) for line in lines), (key, lines)
    for check in ("ours", "bare", "normalize"):
        assert any(re.match(rf"{check}\s*:.* MB/s .* core-hours", line) for line in lines), (check, lines)
    plants = next(line for line in lines if line.startswith("planted leaks: "))
    assert re.match(
        r"planted leaks: [1-9]\d* verbatim \(both found all\), [1-9]\d* rewritten \(ours found all\)", plants
    ), plants


def test_the_data_benchmark_compares_the_whole_step_with_stock_datatrove_and_their_outputs():
    refused = subprocess.run(
        [sys.executable, str(BENCHMARKS / "data_throughput.py"), "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert refused.returncode == 2 and "at least 3 runs" in refused.stderr  # a figure needs its spread
    lines = run_benchmark(
        "data_throughput.py", "--mb", "0.2", "--tasks", "1", "--repeat", "1", "--allow-few-repeats", timeout=600
    )
    assert re.fullmatch(rf"ratio_vs_tokenizer: {FLOAT}", lines[-1]), lines[-1]
    assert re.fullmatch(rf"ratio_vs_datatrove: {FLOAT}", lines[-2]) and float(lines[-2].split()[-1]) > 0, lines
    assert lines[-3].startswith("ratio_vs_datatrove spread: median "), lines[-3]
    for build in ("ours (whole data step)", "stock datatrove"):
        assert any(re.match(rf"{re.escape(build)}\s*: median [0-9.]+ s \(range ", line) for line in lines), lines
    # the outputs side by side, every source, with what ours removed
    outputs = next(line for line in lines if line.startswith("outputs: "))
    per_source = [line for line in lines if re.match(r"  (en|fi|hi|ja|vi|code)\s*: ours \d+ docs", line)]
    assert len(per_source) == 6 and all("difference" in line and "ours removed" in line for line in per_source)
    assert ("differ" in outputs) == any("difference +0 docs +0 tokens" not in line for line in per_source)


def test_language_id_real_prints_what_the_clean_phase_removes_per_language_and_the_catch_rates(tmp_path, capsys):
    """The benchmark builds its filters as the clean phase does; sentences written for this test."""
    rows = {
        "sw": ["Hifadhi faili ya config kisha endesha build tena.", "Ingiza password yako tena kwenye form ya login."],
        "en": ["Save the config file and run the build again before you push.", "Open the settings page first."],
        "code": ['docker run --rm -it -v "$PWD":/workspace -w /workspace python:3.12-slim ' + "python -m pytest " * 4],
    }
    for lang, texts in rows.items():
        lines = [json.dumps({"text": t, "url": f"https://example.org/{lang}/{i}"}) for i, t in enumerate(texts)]
        (tmp_path / f"{lang}.jsonl").write_text("\n".join(lines) + "\n")
    assert load("language_id_real").main([str(tmp_path), "--removed"]) == 0
    out = capsys.readouterr().out
    assert "| en | 2 | 0 | 0.0 | - | example.org 2 |" in out
    assert "| sw | 2 | 0 | 0.0 | - | example.org 2 |" in out
    assert "| code | 1 | 0 | 0.0 | - | example.org 1 |" in out
    assert "| en | 2 | 2 | 100.0 | 2 | 100.0 |" in out  # English in the Swahili source: removed, or rerouted
    (tmp_path / "english.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(SystemExit, match="english.jsonl"):
        load("language_id_real").main([str(tmp_path)])
