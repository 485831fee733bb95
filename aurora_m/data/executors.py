"""Running the data step's datatrove pipelines: a local process pool (quiet, forked from a warm server) or Slurm
jobs, every source's chain as tasks of one executor, and the gzip JSONL writer the phases hand documents on with.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path

from ..args import MixtureArguments

logger = logging.getLogger(__name__)


QUIET_WAIT_S = 30  # Slurm: how often to look for finished tasks


def _quiet_local_executor():
    from datatrove.executor import LocalPipelineExecutor

    class QuietLocalExecutor(LocalPipelineExecutor):
        """datatrove's local executor with its console logging kept in the task logs.

        A user mistake found in a worker (a bad parquet file) then reaches the CLI as one line,
        not as loguru's traceback; everything stays in ``logs/<phase>/<source>/logs/``.
        """

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            # loguru keeps the stream it was given for the life of the process: it must stay open
            with contextlib.redirect_stderr(_devnull()):
                return super()._run_for_rank(rank, local_rank, node_rank)

    return QuietLocalExecutor


@functools.cache
def _devnull():
    return open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process, on purpose


def run_pipeline(
    pipeline: list, logging_dir: Path, tasks: int, args: MixtureArguments, job_name: str, workers: int | None = None
) -> None:
    """Run one datatrove pipeline to completion (finished tasks of a killed build are skipped)."""
    workers = max(1, min(workers or args.data_workers, tasks))
    if args.data_executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        executor = SlurmPipelineExecutor(
            pipeline=pipeline,
            logging_dir=str(logging_dir),
            tasks=tasks,
            workers=workers,
            job_name=job_name,
            time=args.slurm_time,
            partition=args.slurm_partition,
            cpus_per_task=args.slurm_cpus_per_task,
            mem_per_cpu_gb=args.slurm_mem_per_cpu_gb,
        )
        executor.run()
        _wait_for_tasks(executor, job_name)
        return
    if workers > 1:
        _prepare_worker_pool()
    # one core per worker, also for one worker: data_workers N means N cores (a tokenizer's own threads
    # would otherwise fight the other workers, or make one worker look like two)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _no_forked_helpers()
    executor = _quiet_local_executor()(
        pipeline=pipeline, logging_dir=str(logging_dir), tasks=tasks, workers=workers, start_method="forkserver"
    )
    with _main_script_not_rerun():
        executor.run()
    missing = executor.get_incomplete_ranks(range(tasks))
    if missing:
        raise RuntimeError(f"{job_name}: tasks {missing} did not complete; see {logging_dir}/logs")


@functools.cache
def _no_forked_helpers() -> None:
    """datatrove starts a ``multiprocess.Manager`` server for every executor, by fork unless told otherwise:
    a forked server inherits this process's lock descriptors and, when this process is killed, lives on
    holding the run's locks (the next run is then refused). Started from the fork server it inherits nothing."""
    import multiprocess

    multiprocess.set_start_method("forkserver", force=True)


@contextlib.contextmanager
def _main_script_not_rerun():
    """Every process the fork server starts runs the parent's main *script* again (its preload of ``__main__``
    never happens: Python looks for the script under another key than the one it is given). Under
    ``python scripts/pretrain.py`` or ``accelerate launch`` that re-imported torch, transformers and trl in each
    of datatrove's helper processes, seconds apiece: a tiny data step took 36 s instead of 5. Nothing those
    processes run comes from the script, so they start without it (a ``python -m`` main is left as it is)."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@functools.cache
def _prepare_worker_pool() -> None:
    """The heavy imports done once in the fork server rather than again in every worker of every phase."""
    import multiprocess

    multiprocess.get_context("forkserver").set_forkserver_preload(
        [
            "datatrove.pipeline.readers",
            "datatrove.pipeline.filters",
            "datatrove.pipeline.dedup",
            "datatrove.pipeline.tokens",
            "aurora_m.data.intake",
            "aurora_m.data.clean",
            "tokenizers",
        ]
    )


def _wait_for_tasks(executor, job_name: str) -> None:
    """Slurm jobs run elsewhere: the mixer starts when every task has written its completion file."""
    while missing := executor.get_incomplete_ranks(range(executor.world_size)):
        logger.info("%s: waiting for %d Slurm task(s)", job_name, len(missing))
        time.sleep(QUIET_WAIT_S)


def run_per_source(
    chains: dict[str, tuple[list, int]], phase: Path, args: MixtureArguments, job_name: str, sizes: dict[str, int]
) -> None:
    """Every source's chain as tasks of one executor (one process pool for the whole phase).

    Largest sources first: workers take tasks in rank order, so the long ones start early and the last
    tasks to finish are short ones (the order is fixed by the inputs, so a resumed build maps ranks alike).
    """
    from .multisource import SourceTasks

    per_task = {name: sizes.get(name, 0) / max(1, tasks) for name, (_, tasks) in chains.items()}
    ordered = dict(sorted(chains.items(), key=lambda kv: -per_task[kv[0]]))
    router = SourceTasks(ordered, phase / "by_source")
    run_pipeline([router], phase, router.world_size, args, job_name)


def _writer(folder: Path, filename: str, max_mb: float | None = None):
    from datatrove.pipeline.writers import JsonlWriter

    max_bytes = int(max_mb * 2**20) if max_mb else -1
    return JsonlWriter(str(folder), output_filename=filename, compression="gzip", max_file_size=max_bytes)
