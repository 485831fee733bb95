"""Launching nanotron training: the launch's shape from the environment (nodes x GPUs, the rendezvous), this
node's ``torchrun`` of :mod:`.entry` or one per node through ``srun`` inside a Slurm job, and the launch itself
(which dies with aurora-m).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ...errors import RecipeError
from ...layout import DatasetDir
from .folders import NanotronDirs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Nodes:
    """Where a nanotron stage trains: ``nnodes`` x ``nproc_per_node`` GPUs, meeting at ``master``."""

    nnodes: int = 1
    nproc_per_node: int = 1
    master: str = "localhost:29500"
    job_id: str = "aurora-m"
    max_restarts: int = 0

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _env_int(env, name: str, default: int, minimum: int) -> int:
    text = env.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise RecipeError(None, name, f"expected a whole number >= {minimum} in the environment, got {text!r}")
    return value


def nodes_from_env(env=None, gpus_here: int | None = None) -> Nodes:
    """The launch's shape: ``AURORA_M_NPROC_PER_NODE`` (default: this node's GPUs) and ``AURORA_M_NNODES``
    (default: ``SLURM_NNODES`` inside a Slurm job, else 1); several nodes meet at ``MASTER_ADDR:MASTER_PORT``
    (default: this host, the first node of the allocation where the batch script runs) and may restart
    ``MAX_RESTARTS`` times (recipes/launch.slurm sets all of these)."""
    env = os.environ if env is None else env
    if gpus_here is None:
        import torch

        gpus_here = torch.cuda.device_count()
    slurm_nodes = _env_int(env, "SLURM_NNODES", 1, 1) if env.get("SLURM_JOB_ID") else 1
    nnodes = _env_int(env, "AURORA_M_NNODES", slurm_nodes, 1)
    nproc = _env_int(env, "AURORA_M_NPROC_PER_NODE", gpus_here, 0)
    if nproc < 1:
        raise RecipeError(
            None, "engine", "nanotron needs GPUs and this node has none (or set AURORA_M_NPROC_PER_NODE)"
        )
    addr = env.get("MASTER_ADDR") or (socket.gethostname() if nnodes > 1 else "localhost")
    port = _env_int(env, "MASTER_PORT", 29500, 1)
    return Nodes(
        nnodes, nproc, f"{addr}:{port}", env.get("SLURM_JOB_ID") or "aurora-m", _env_int(env, "MAX_RESTARTS", 0, 0)
    )


def torchrun_command(config_yaml: Path, data_dir: Path, nodes: Nodes, loss_log: Path | None = None) -> list[str]:
    """One node's launch. Every node of a multi-node job runs this same command: torchrun's c10d rendezvous
    at ``nodes.master`` numbers the nodes, so no node needs to know its rank."""
    where = (
        ["--standalone"]
        if nodes.nnodes == 1
        else ["--rdzv_backend=c10d", f"--rdzv_endpoint={nodes.master}", f"--rdzv_id={nodes.job_id}"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nodes.nnodes}",
        f"--nproc_per_node={nodes.nproc_per_node}",
        *where,
        f"--max_restarts={nodes.max_restarts}",
        "-m",
        "aurora_m.engines.nanotron.entry",
        "--config-file",
        str(config_yaml),
        "--data",
        str(data_dir),
        *(["--loss-log", str(loss_log)] if loss_log else []),
    ]


def launch_command(
    config_yaml: Path, data_dir: Path, nodes: Nodes, log_dir: Path, loss_log: Path | None = None
) -> list[str]:
    """This node's torchrun, or on several nodes one torchrun per node through ``srun`` (inside the Slurm job;
    ``--kill-on-bad-exit``: a failed node stops the others instead of leaving them in a collective), each
    node's output in ``log_dir/train-JOBID-nodeN.log``."""
    command = torchrun_command(config_yaml, data_dir, nodes, loss_log)
    if nodes.nnodes == 1:
        return command
    if not shutil.which("srun"):
        raise RecipeError(
            None,
            "AURORA_M_NNODES",
            f"{nodes.nnodes} nodes are launched with srun, inside a Slurm "
            f"job (recipes/launch.slurm nanotron ...); there is no srun here",
        )
    return [
        "srun",
        f"--nodes={nodes.nnodes}",
        f"--ntasks={nodes.nnodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--open-mode=append",
        f"--output={log_dir}/train-%j-node%n.log",
        *command,
    ]


def _die_with_parent() -> None:
    """In the launched torchrun (or srun), before it starts: SIGTERM when aurora-m dies, even by SIGKILL, so no
    launch trains on, unowned, beside the next run of the stage (torchrun and srun stop their workers on it)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)


def launch(ctx, data: DatasetDir, nodes: Nodes) -> None:
    folders = NanotronDirs(ctx.dirs)
    command = launch_command(folders.config, data.root, nodes, folders.logs, folders.losses)
    if nodes.nnodes > 1:
        folders.logs.mkdir(exist_ok=True)
        logger.info(
            "%s: %d nodes x %d GPUs, each node's log in %s",
            ctx.stage,
            nodes.nnodes,
            nodes.nproc_per_node,
            folders.logs,
        )
    logger.info("%s: %s", ctx.stage, " ".join(command))
    env = {**os.environ, "CUDA_DEVICE_MAX_CONNECTIONS": "1"}  # nanotron's TP overlap needs it
    if subprocess.run(command, env=env, check=False, preexec_fn=_die_with_parent).returncode != 0:
        raise RuntimeError(
            f"{ctx.stage}: the nanotron launch failed (its log is above"
            f"{' and in ' + str(folders.logs) if nodes.nnodes > 1 else ''}); "
            f"running the stage again resumes from {folders.checkpoints}"
        )
