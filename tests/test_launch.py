"""The user's launch paths: `accelerate launch --cpu` and a 2-process data-parallel run (gloo)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import OFFLINE, ROOT

SHORT = ["--max_steps", "2", "--train_tokens", "4096", "--save_strategy", "no", "--logging_steps", "1"]


def _run(argv, tmp_path):
    env = {**os.environ, **OFFLINE}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_accelerate_launch_cpu_runs_the_pretrain_script(tmp_path, cache_dir):
    if not shutil.which("accelerate"):
        pytest.skip("accelerate CLI not on PATH")
    out = tmp_path / "cap"
    result = _run(["accelerate", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "scripts/pretrain.py",
                   "--config", "recipes/aurora-m-tiny/cap.yaml", "--output_dir", str(out), *SHORT], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "data" / "mixture.json").is_file()


def test_two_process_data_parallel_on_cpu(tmp_path, cache_dir):
    out = tmp_path / "cap"
    result = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "scripts/pretrain.py",
                   "--config", "recipes/aurora-m-tiny/cap.yaml", "--output_dir", str(out), *SHORT], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = re.findall(r"\[aurora-m\][^\r\n]*", result.stderr)  # a log line may follow a progress bar's \r
    assert any("2 ranks" in line for line in logs)  # the budget line counts both processes
    assert len(logs) > 5 and len(logs) == len(set(logs)), logs  # each log line once, not once per rank
    losses = [line for line in logs if "] step " in line and ": loss " in line]
    assert len(losses) == 2, logs  # two steps, logged by the main process only
    assert not result.stdout.strip()  # logs go to stderr; a script has no result line
    assert "find_unused_parameters=True" not in result.stderr  # the recipe says every parameter is used
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(),
                    reason="needs a CUDA GPU (bf16 tiny CAP on the accelerator)")
def test_tiny_cap_in_bf16_on_a_gpu(tmp_path, cache_dir):
    out = tmp_path / "cap"
    result = _run([sys.executable, "scripts/pretrain.py", "--config", "recipes/aurora-m-tiny/cap.yaml",
                   "--output_dir", str(out), "--use_cpu", "false", "--bf16", "true", *SHORT], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()
