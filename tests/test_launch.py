"""The user's launch paths: `accelerate launch`, a 2-process data-parallel run (gloo), FSDP2's final save,
the optional extras checked before any work starts, and recipes/launch.slurm (run against Slurm shims)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from warm import run

from conftest import OFFLINE, ROOT, edit_yaml

SLURM = ROOT / "recipes" / "launch.slurm"
ACCELERATE_CONFIGS = ROOT / "recipes" / "accelerate_configs"


def short(ranks: int = 1) -> list[str]:
    """Two steps of the tiny CAP: train_tokens = max_steps x (8 sequences x ranks) x 128 tokens."""
    return [
        "--max_steps",
        "2",
        "--train_tokens",
        str(2 * 8 * ranks * 128),
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
    ]


def _run(argv, tmp_path, env=None):
    return run(list(argv), cwd=ROOT, timeout=600, env={**os.environ, **OFFLINE, **(env or {})})


def without(tmp_path: Path, *modules: str) -> dict:
    """An environment whose Python cannot import ``modules`` (as on a machine without them): a sitecustomize
    sets ``sys.modules[name] = None``, which makes ``import name`` raise ImportError."""
    folder = tmp_path / f"without-{'-'.join(modules)}"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules), encoding="utf-8"
    )
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)}


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


# ----------------------------------------------------------------------------- accelerate launch, torchrun
def test_accelerate_launch_cpu_runs_the_pretrain_script(tmp_path, cache_dir):
    if not shutil.which("accelerate"):
        pytest.skip("accelerate CLI not on PATH")
    out = tmp_path / "cap"
    result = _run(
        [
            "accelerate",
            "launch",
            "--cpu",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "scripts/pretrain.py",
            "--config",
            "recipes/aurora-m-tiny/cap.yaml",
            "--output_dir",
            str(out),
            *short(1),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "data" / "mixture.json").is_file()


def test_two_process_data_parallel_on_cpu(tmp_path, cache_dir):
    out = tmp_path / "cap"
    result = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "scripts/pretrain.py",
            "--config",
            "recipes/aurora-m-tiny/cap.yaml",
            "--output_dir",
            str(out),
            *short(2),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logs = re.findall(r"\[aurora-m\][^\r\n]*", result.stderr)  # a log line may follow a progress bar's \r
    assert any("2 ranks" in line for line in logs)  # the budget line counts both processes
    assert len(logs) > 5 and len(logs) == len(set(logs)), logs  # each log line once, not once per rank
    losses = [line for line in logs if "] step " in line and ": loss " in line]
    assert len(losses) == 2, logs  # two steps, logged by the main process only
    assert not result.stdout.strip()  # logs go to stderr; a script has no result line
    assert "find_unused_parameters=True" not in result.stderr  # the recipe says every parameter is used
    assert (out / "model" / "model.safetensors").is_file()


def test_two_ranks_with_a_max_steps_for_one_are_refused_before_the_data_step(tmp_path):
    """The tiny cap.yaml states max_steps for one process; on two its budget is 120 steps: said at once, with
    the advice the CLI accepts, and no dataset is built first."""
    out = tmp_path / "cap"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "scripts/pretrain.py"]
    result = _run([*argv, "--config", "recipes/aurora-m-tiny/cap.yaml", "--output_dir", str(out)], tmp_path)
    assert result.returncode != 0
    errors = {line for line in result.stderr.splitlines() if line.startswith("pretrain.py: error:")}
    assert len(errors) == 1, result.stderr[-3000:]  # each rank says the same one line
    (line,) = errors
    assert "max_steps: 240 disagrees with the token budget" in line and "x 2 ranks" in line, line
    assert "= 120 steps. Delete max_steps from the stage YAML" in line and "-1" not in line
    assert not out.exists()  # refused before the data step (and before the folder was claimed)


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (bf16 tiny CAP on the accelerator)"
)
def test_tiny_cap_in_bf16_on_a_gpu(tmp_path, cache_dir):
    out = tmp_path / "cap"
    result = _run(
        [
            sys.executable,
            "scripts/pretrain.py",
            "--config",
            "recipes/aurora-m-tiny/cap.yaml",
            "--output_dir",
            str(out),
            "--use_cpu",
            "false",
            "--bf16",
            "true",
            *short(1),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- FSDP2: sharded checkpoints, full model
FSDP_PROBE = """\
import json, torch
from accelerate import Accelerator
accelerator = Accelerator(cpu=not torch.cuda.is_available())
if accelerator.is_main_process:
    print("PROBE " + json.dumps({"distributed_type": str(accelerator.distributed_type).rsplit(".", 1)[-1],
                                 "fsdp2": accelerator.is_fsdp2, "processes": accelerator.num_processes}))
accelerator.end_training()
"""


def _fsdp2_launch(ranks: int, gpu: bool) -> list[str]:
    return [
        "accelerate",
        "launch",
        "--config_file",
        str(ACCELERATE_CONFIGS / "fsdp2.yaml"),
        "--num_processes",
        str(ranks),
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16" if gpu else "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]


def test_fsdp2_checkpoints_stay_sharded_and_the_model_is_full_safetensors(tmp_path, cache_dir):
    """Under fsdp2.yaml (SHARDED_STATE_DICT) checkpoints are per-rank shards, yet model/ holds full weights that
    load and equal the final checkpoint's. Where accelerate does not run FSDP (a CPU), the probe says why."""
    import accelerate
    import torch

    if not shutil.which("accelerate"):
        pytest.skip("accelerate CLI not on PATH")
    gpu = torch.cuda.is_available()
    ranks = torch.cuda.device_count() if gpu else 2
    probe = tmp_path / "probe.py"
    probe.write_text(FSDP_PROBE, encoding="utf-8")
    result = _run([*_fsdp2_launch(ranks, gpu), str(probe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(re.search(r"^PROBE (.*)$", result.stdout, re.M).group(1))
    if not found["fsdp2"]:
        pytest.skip(
            f"FSDP2 does not run here: accelerate {accelerate.__version__} launches fsdp2.yaml on "
            f"{'GPU' if gpu else 'CPU'} as {found['distributed_type']} with {found['processes']} process(es) "
            f"(its AcceleratorState turns FSDP on only for GPU distributed types)"
        )

    out = tmp_path / "cap"
    device = ["--use_cpu", "false", "--bf16", "true"] if gpu else ["--use_cpu", "true", "--bf16", "false"]
    result = _run(
        [
            *_fsdp2_launch(ranks, gpu),
            "scripts/pretrain.py",
            "--config",
            "recipes/aurora-m-tiny/cap.yaml",
            "--output_dir",
            str(out),
            *short(ranks),
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            *device,
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = out / "checkpoint-2"
    shards = checkpoint / "pytorch_model_fsdp_0"  # accelerate's sharded (torch.distributed.checkpoint) save
    assert shards.is_dir(), sorted(p.name for p in checkpoint.iterdir())
    assert not (checkpoint / "model.safetensors").exists()  # checkpoints stay sharded: no gather at each save

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = out / "model"
    assert (model_dir / "model.safetensors").is_file(), sorted(p.name for p in model_dir.iterdir())
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert len(AutoTokenizer.from_pretrained(model_dir)) == model.config.vocab_size
    dcp_to_torch_save(shards, tmp_path / "checkpoint.pt")
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    saved = {
        re.sub(r"(_checkpoint_wrapped_module|_orig_mod|_fsdp_wrapped_module)\.", "", k): v for k, v in saved.items()
    }
    params = dict(model.named_parameters())
    assert set(params) <= set(saved), sorted(set(params) - set(saved))
    for name, value in params.items():
        assert torch.equal(saved[name].to(value.dtype), value.detach()), name


def test_the_final_save_switches_fsdp_to_full_and_back():
    """The final save gathers a full state dict; checkpoints after it (another stage in the same process) stay
    sharded, with their sharded configs."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import FullStateDictConfig, ShardedStateDictConfig, StateDictType

    from aurora_m.train.saving import full_state_dict

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")
    before = plugin.state_dict_config
    with full_state_dict(plugin):
        assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
        assert isinstance(plugin.state_dict_config, FullStateDictConfig)
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert plugin.state_dict_config is before and isinstance(before, ShardedStateDictConfig)


def test_accelerate_configs_mirror_trl_names_and_fsdp2_checkpoints_are_sharded():
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in ACCELERATE_CONFIGS.glob("*.yaml")}
    assert set(configs) == {"single_gpu", "multi_gpu", "zero1", "zero2", "zero3", "fsdp1", "fsdp2"}
    assert configs["fsdp2"]["fsdp_config"]["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert configs["fsdp1"]["fsdp_config"]["fsdp_version"] == 1
    assert configs["zero1"]["deepspeed_config"]["zero_stage"] == 1
    assert configs["zero3"]["deepspeed_config"]["zero3_save_16bit_model"] is True  # model/ gets full weights
    for name, config in configs.items():  # the recipe's activation_checkpointing; Trainer refuses both
        assert not (config.get("fsdp_config") or {}).get("fsdp_activation_checkpointing"), name


# ----------------------------------------------------------------------------- extras: refused before any work
def _extras_in_setup_cfg() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return set(parser["options.extras_require"])


def test_every_install_hint_names_an_extra_setup_cfg_declares():
    extras = _extras_in_setup_cfg()
    assert {"deepspeed", "tensorboard", "trackio", "wandb", "flash-attn"} <= extras
    from aurora_m import extras as module

    named = set(re.findall(r"aurora-m\[([\w-]+)\]", Path(module.__file__).read_text()))
    named |= set(module.REPORTERS) | {"deepspeed"}  # hints built from names
    assert named <= extras, named - extras
    tests_extra = configparser.ConfigParser()
    tests_extra.read(ROOT / "setup.cfg")
    assert "tensorboard" in tests_extra["options.extras_require"]["tests"]  # the 15B recipe validates in CI


def test_validate_refuses_the_15b_recipe_without_tensorboard(tmp_path):
    result = _run(
        [sys.executable, "-m", "aurora_m.cli", "validate", "recipes/aurora-m-15b"],
        tmp_path,
        env=without(tmp_path, "tensorboard", "tensorboardX"),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert "cap.yaml: report_to: 'tensorboard' is not installed" in line
    assert "pip install 'aurora-m[tensorboard]'" in line


def test_run_stops_before_the_data_step_when_report_to_is_missing(tmp_path, recipe_copy):
    edit_yaml(recipe_copy / "cap.yaml", "report_to: none", "report_to: tensorboard")
    run_dir = tmp_path / "run"
    result = _run(
        [sys.executable, "-m", "aurora_m.cli", "run", str(recipe_copy), "--output-dir", str(run_dir)],
        tmp_path,
        env=without(tmp_path, "tensorboard", "tensorboardX"),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "report_to" in one_error_line(result)
    from aurora_m.layout import RunLayout

    assert not RunLayout(run_dir).stage("cap").data.root.exists()


@pytest.mark.parametrize("how", ["patch", "flag"])
def test_flash_attention_without_flash_attn_is_refused(tmp_path, recipe_copy, how):
    if how == "patch":
        edit_yaml(recipe_copy / "cap.yaml", '"attn:sdpa"', '"attn:flash_attention_2"')
        argv = [sys.executable, "-m", "aurora_m.cli", "validate", str(recipe_copy)]
        where = "cap.yaml: config_patches: flash_attention_2 needs the flash_attn module"
    else:
        argv = [
            sys.executable,
            "scripts/pretrain.py",
            "--config",
            str(recipe_copy / "cap.yaml"),
            "--output_dir",
            str(tmp_path / "cap"),
            "--attn_implementation",
            "flash_attention_2",
        ]
        where = "command line: --attn_implementation: flash_attention_2 needs the flash_attn module"
    result = _run(argv, tmp_path, env=without(tmp_path, "flash_attn"))
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert where in line and "pip install 'aurora-m[flash-attn]'" in line
    assert not (tmp_path / "cap").exists()  # refused before the data step


def test_a_deepspeed_launch_without_deepspeed_stops_before_the_data_step(tmp_path):
    """`accelerate launch` with a zero config sets ACCELERATE_USE_DEEPSPEED for the script it starts."""
    out = tmp_path / "cap"
    result = _run(
        [
            sys.executable,
            "scripts/pretrain.py",
            "--config",
            "recipes/aurora-m-tiny/cap.yaml",
            "--output_dir",
            str(out),
            *short(1),
        ],
        tmp_path,
        env={
            **without(tmp_path, "deepspeed"),
            "ACCELERATE_USE_DEEPSPEED": "true",
            "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
        },
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert "accelerate config: distributed_type: DEEPSPEED needs deepspeed" in line
    assert "pip install 'aurora-m[deepspeed]'" in line
    assert not out.exists()


@pytest.mark.parametrize("config", sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
def test_each_accelerate_config_is_checked_for_its_packages(tmp_path, config):
    path = ACCELERATE_CONFIGS / f"{config}.yaml"
    result = _run([sys.executable, "-m", "aurora_m.extras", str(path)], tmp_path, env=without(tmp_path, "deepspeed"))
    if config.startswith("zero"):
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"{path}: distributed_type: DEEPSPEED needs deepspeed" in one_error_line(result)
    else:
        assert result.returncode == 0, result.stderr[-3000:]


def test_torch_compile_is_refused_only_when_its_toolchain_is_missing(tmp_path, monkeypatch):
    import torch

    from aurora_m.errors import RecipeError
    from aurora_m.extras import check_extras

    with pytest.raises(RecipeError, match="torch_compile_backend: torch.compile has no backend 'nope'"):
        check_extras("cap.yaml", {"torch_compile": True, "torch_compile_backend": "nope"}, launch=True)
    check_extras("cap.yaml", {"torch_compile": True}, launch=False)  # a recipe may compile; the machine decides
    if torch.cuda.is_available():
        pytest.skip("the CPU toolchain case needs a machine without a GPU")
    check_extras("cap.yaml", {"torch_compile": True, "use_cpu": True}, launch=True)  # g++ is here
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on PATH
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RecipeError, match="cap.yaml: torch_compile: .*C\\+\\+ compiler"):
        check_extras("cap.yaml", {"torch_compile": True, "use_cpu": True}, launch=True)


# ----------------------------------------------------------------------------- recipes/launch.slurm, without Slurm
SRUN = r"""#!/bin/bash
# srun as the launch script uses it: records its argv, then runs the command once per task (in parallel),
# with SLURM_PROCID / SLURM_NODEID set and the task's output in --output (%j, %n, %t expanded)
argv="$*"
echo "srun ${argv//$'\n'/ }" >> "$FAKE_CALLS"  # one line per call
ntasks=${SLURM_NNODES:-1}; output=""
while [ $# -gt 0 ]; do
    case "$1" in
    --ntasks=*) ntasks=${1#--ntasks=} ;;
    --output=*) output=${1#--output=} ;;
    --*) ;;
    *) break ;;
    esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    (
        export SLURM_PROCID=$i SLURM_NODEID=$i SLURM_LOCALID=0
        if [ -n "$output" ]; then
            out=${output//%j/$SLURM_JOB_ID}; out=${out//%n/$i}; out=${out//%t/$i}
            exec "$@" >>"$out" 2>&1
        fi
        exec "$@"
    ) &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
SCONTROL = r"""#!/bin/bash
echo "scontrol $*" >> "$FAKE_CALLS"
if [ "$1 $2" = "show hostnames" ]; then tr ',' '\n' <<< "$3"; fi
"""
ACCELERATE = r"""#!/bin/bash
echo "accelerate[$SLURM_PROCID] $* | nccl_async=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-}" >> "$FAKE_CALLS"
echo "training on node $SLURM_PROCID"
sleep "${FAKE_TRAIN_SECONDS:-0}"
"""
PYTHON = r"""#!/bin/bash
# the environment's python: checks (-c, -m) run for real; a stage script and aurora-m's own commands (which
# would train) are recorded, with the launch shape they see
case "$1 ${2:-}" in
"-m aurora_m.cli" | "-m aurora_m.engines.nanotron.entry")
    shape="nnodes=${AURORA_M_NNODES:-} nproc=${AURORA_M_NPROC_PER_NODE:-} master=${MASTER_ADDR:-}:${MASTER_PORT:-}"
    echo "${FAKE_ENV_NAME:-python}[${SLURM_PROCID:-batch}] $* | $shape" >> "$FAKE_CALLS"
    exit "${FAKE_EXIT:-0}" ;;
esac
case "$1" in -c | -m) exec "$REAL_PYTHON" "$@" ;; esac
echo "python[${SLURM_PROCID:-batch}] $*" >> "$FAKE_CALLS"
echo "data step on node ${SLURM_PROCID:-batch}"
"""


@pytest.fixture()
def slurm(tmp_path):
    """Fake srun/scontrol on PATH, a virtualenv (AURORA_M_ENV) whose python/accelerate record their calls,
    and the SLURM_* variables of a 2-node job; returns (run, calls, output_dir)."""
    system_bin, venv = tmp_path / "slurm-bin", tmp_path / "venv"
    for folder, shims in (
        (system_bin, {"srun": SRUN, "scontrol": SCONTROL}),
        (venv / "bin", {"accelerate": ACCELERATE, "python": PYTHON}),
    ):
        folder.mkdir(parents=True)
        for name, text in shims.items():
            (folder / name).write_text(text, encoding="utf-8")
            (folder / name).chmod(0o755)
    (venv / "bin" / "activate").write_text(f'export VIRTUAL_ENV="{venv}"\nexport PATH="{venv}/bin:$PATH"\n')
    calls, out = tmp_path / "calls.txt", tmp_path / "runs" / "cap"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "MAX_RESTARTS"))}
    env.update(
        OFFLINE,
        PATH=f"{system_bin}{os.pathsep}{env['PATH']}",
        FAKE_CALLS=str(calls),
        REAL_PYTHON=sys.executable,
        AURORA_M_ENV=str(venv),
        SLURM_JOB_ID="4242",
        SLURM_NNODES="2",
        SLURM_JOB_NODELIST="gpu-a,gpu-b",
        SLURM_GPUS_ON_NODE="4",
        SLURM_SUBMIT_DIR=str(ROOT),
    )

    def run(*args, extra_env=None, popen=False):
        argv = ["bash", str(SLURM), *args]
        full_env = {**env, **(extra_env or {})}
        if popen:
            return subprocess.Popen(
                argv, cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        return subprocess.run(argv, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120)

    return run, calls, out


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_launch_slurm_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SLURM)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = SLURM.read_text()
    for directive in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@300", "#SBATCH --ntasks-per-node=1"):
        assert directive in text


# the tiny cap.yaml states max_steps 240 for one process; the fake job's 2 nodes x 4 GPUs train it in 30
EIGHT_RANKS = ("--max_steps", "30")


def test_launch_slurm_builds_data_once_then_launches_one_rank_per_node(slurm):
    run, calls, out = slurm
    result = run("pretrain", "recipes/aurora-m-tiny/cap.yaml", str(out), "multi_gpu", "--learning_rate", "1e-4")
    assert result.returncode == 2, result.stderr  # max_steps 240 is one process's: said before anything runs
    assert not any(line.startswith("srun") for line in _calls(calls))
    line = result.stderr.strip().splitlines()[-1]
    assert "cap.yaml: max_steps: 240 disagrees with the token budget" in line and "x 8 ranks" in line, line
    assert "= 30 steps. Delete max_steps from the stage YAML" in line
    calls.unlink()
    result = run(
        "pretrain", "recipes/aurora-m-tiny/cap.yaml", str(out), "multi_gpu", "--learning_rate", "1e-4", *EIGHT_RANKS
    )
    assert result.returncode == 0, result.stderr
    lines = _calls(calls)
    data = [i for i, line in enumerate(lines) if line.startswith("python[") and "scripts/data.py" in line]
    assert len(data) == 1, lines  # the data step ran once, on one node ...
    assert lines[data[0]] == (
        f"python[0] scripts/data.py --config recipes/aurora-m-tiny/cap.yaml --output_dir {out} --learning_rate 1e-4 "
        "--max_steps 30"
    )
    sruns = [line for line in lines if line.startswith("srun ")]
    assert len(sruns) == 2 and "--nodes=1 --ntasks=1" in sruns[0], sruns
    assert "--nodes=2" in sruns[1] and "--kill-on-bad-exit=1" in sruns[1], sruns
    launches = {int(m.group(1)): line for line in lines if (m := re.match(r"accelerate\[(\d)\] launch ", line))}
    assert sorted(launches) == [0, 1], lines  # ... before training, which ran once per node
    assert all(i > data[0] for i, line in enumerate(lines) if line.startswith("accelerate"))
    for rank, line in launches.items():
        assert f"--machine_rank {rank} " in line  # each node its own rank, expanded inside its task
        for part in (
            "--config_file recipes/accelerate_configs/multi_gpu.yaml",
            "--num_machines 2",
            "--num_processes 8",
            "--main_process_ip gpu-a",
            "--main_process_port 29500",
            "--rdzv_backend c10d",
            "--max_restarts 0",
            f"scripts/pretrain.py --config recipes/aurora-m-tiny/cap.yaml --output_dir {out} --learning_rate 1e-4 "
            "--max_steps 30",
            "nccl_async=1",
        ):
            assert part in line, (part, line)
    logs = out / "logs"  # per-step, per-node logs, in a folder the script made
    assert (logs / "data-4242.log").read_text().strip() == "data step on node 0"
    for rank in (0, 1):
        assert (logs / f"train-4242-node{rank}.log").read_text().strip() == f"training on node {rank}"


def test_launch_slurm_skips_a_built_data_step_when_requeued(slurm):
    from aurora_m.layout import StageDir

    run, calls, out = slurm
    index = StageDir(out).data.index
    index.parent.mkdir(parents=True)
    index.write_bytes(b"")  # what a finished data step leaves
    result = run(
        "pretrain",
        "recipes/aurora-m-tiny/cap.yaml",
        str(out),
        "multi_gpu",
        *EIGHT_RANKS,
        extra_env={"SLURM_RESTART_COUNT": "1", "MAX_RESTARTS": "3"},
    )
    assert result.returncode == 0, result.stderr
    lines = _calls(calls)
    assert not any("scripts/data.py" in line for line in lines), lines
    assert sum(line.startswith("accelerate") and "--max_restarts 3" in line for line in lines) == 2, lines


def test_launch_slurm_requeues_itself_near_the_time_limit(slurm):
    run, calls, out = slurm
    proc = run(
        "pretrain",
        "recipes/aurora-m-tiny/cap.yaml",
        str(out),
        "multi_gpu",
        *EIGHT_RANKS,
        extra_env={"FAKE_TRAIN_SECONDS": "4"},
        popen=True,
    )
    deadline = time.monotonic() + 60
    while sum(line.startswith("accelerate") for line in _calls(calls)) < 2:  # training runs on both nodes
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 sends to the batch shell
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "scontrol requeue 4242" in _calls(calls), _calls(calls)
    assert "requeueing job 4242" in stderr


def test_launch_slurm_refuses_missing_arguments_with_a_usage_line(slurm):
    run, calls, out = slurm
    for args in (
        (),
        ("pretrain",),
        ("pretrain", "recipes/aurora-m-tiny/cap.yaml"),
        ("pretrian", "recipes/aurora-m-tiny/cap.yaml", str(out)),
        ("pretrain", "recipes/aurora-m-tiny/cap.yaml", str(out), "zero9"),
    ):
        result = run(*args)
        assert result.returncode != 0, args
        assert any(line.startswith("usage: sbatch") for line in result.stderr.splitlines()), (args, result.stderr)
    assert not _calls(calls)  # nothing was started


def test_launch_slurm_checks_the_accelerate_config_before_the_data_step(slurm, tmp_path):
    run, calls, out = slurm
    result = run(
        "pretrain", "recipes/aurora-m-tiny/cap.yaml", str(out), "zero3", extra_env=without(tmp_path, "deepspeed")
    )
    assert result.returncode == 2, result.stderr
    assert "distributed_type: DEEPSPEED needs deepspeed" in result.stderr
    assert not any(line.startswith("srun") for line in _calls(calls))


def test_launch_slurm_refuses_full_state_under_deepspeed_before_the_data_step(slurm):
    """The launch the README once documented for CAT (zero3, init_from: full_state) failed in on_train_begin, after
    the data step and the model load; now it stops first, in one line, and fsdp2 (what the README says) passes."""
    run, calls, out = slurm
    cat = ("pretrain", "recipes/aurora-m-15b/cat.yaml", str(out))
    result = run(*cat, "zero3", "--model_name_or_path", "runs/cap/model")
    assert result.returncode == 2, result.stderr
    assert "cat.yaml: init_from: full_state under recipes/accelerate_configs/zero3.yaml (DEEPSPEED)" in result.stderr
    assert "fsdp2" in result.stderr
    assert not any(line.startswith("srun") for line in _calls(calls))
    # the override is what the stage runs with (zero3 may still want deepspeed installed here)
    assert "full_state" not in run(*cat, "zero3", "--init_from", "weights").stderr
    assert run(*cat, "fsdp2").returncode == 0


# ----------------------------------------------------------------------------- launch.slurm, nanotron stages
NANOTRON = ("nanotron", "recipes/aurora-m-15b/nanotron")


def test_launch_slurm_nanotron_checks_then_builds_data_once_then_trains_from_the_batch_shell(slurm, tmp_path):
    run, calls, out = slurm
    data_env = tmp_path / "data-venv"
    (data_env / "bin").mkdir(parents=True)
    (data_env / "bin" / "python").write_text(PYTHON.replace("#!/bin/bash", "#!/bin/bash\nFAKE_ENV_NAME=datapython"))
    (data_env / "bin" / "python").chmod(0o755)
    (data_env / "bin" / "activate").write_text(f'export PATH="{data_env}/bin:$PATH"\n')
    result = run(
        *NANOTRON, str(out), "--stage", "cap", "--tp", "4", "--pp", "4", extra_env={"AURORA_M_DATA_ENV": str(data_env)}
    )
    assert result.returncode == 0, result.stderr
    lines = _calls(calls)
    ours = [line for line in lines if not line.startswith(("srun", "scontrol"))]
    shape = "| nnodes=2 nproc=4 master=gpu-a:29500"
    assert ours == [
        "python[batch] -m aurora_m.engines.nanotron.entry --check --recipe recipes/aurora-m-15b/nanotron --stage cap "
        "| nnodes= nproc= master=gpu-a:29500",
        f"datapython[0] -m aurora_m.cli data recipes/aurora-m-15b/nanotron --output-dir {out} --stage cap --tp 4 "
        "--pp 4 | nnodes= nproc= master=gpu-a:29500",  # once, on one node, in the data environment
        f"python[batch] -m aurora_m.cli train recipes/aurora-m-15b/nanotron --output-dir {out} --stage cap --tp 4 "
        f"--pp 4 {shape}",  # in the batch shell: its srun torchrun reaches every node
    ], lines
    sruns = [line for line in lines if line.startswith("srun ")]
    assert len(sruns) == 1 and "--nodes=1 --ntasks=1" in sruns[0], sruns
    assert not (out / "logs").exists()  # the run folder holds only what aurora-m writes
    assert f"logs in {out}/cap/nanotron-logs" in result.stderr


def test_launch_slurm_nanotron_refuses_what_it_cannot_run(slurm, tmp_path):
    run, calls, out = slurm
    for args in (
        ("nanotron", "recipes/aurora-m-15b/cap.yaml", str(out), "--stage", "cap"),  # a stage, not a recipe
        (*NANOTRON, str(out), "--tp", "4"),  # which stage?
        (*NANOTRON, str(out), "zero3", "--stage", "cap"),
    ):  # nanotron has no accelerate config
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert any(line.startswith("usage: sbatch") for line in result.stderr.splitlines()), (args, result.stderr)
    assert not _calls(calls)
    failed = run(*NANOTRON, str(out), "--stage=cat", extra_env={"FAKE_EXIT": "2"})  # e.g. nanotron not installed
    assert failed.returncode == 2, failed.stderr
    started = [line.split(" | ")[0] for line in _calls(calls) if not line.startswith("scontrol show hostnames")]
    assert started == [
        "python[batch] -m aurora_m.engines.nanotron.entry --check --recipe recipes/aurora-m-15b/nanotron --stage cat"
    ]  # nothing after the check
