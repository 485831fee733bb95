"""One datatrove executor for many sources: each task runs the chain of the source it belongs to.

A phase with one executor per source pays a process pool's start-up per source and cannot run two
sources at once; here the tasks of every source share one pool (``tasks = sum of each source's``),
so N workers stay busy whatever the mix of source sizes. Each task writes its chain's stats to
``<stats_dir>/<source>/<task>.json``; :func:`source_stats` merges them into the list datatrove's own
``stats.json`` holds.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from ..io import write_text


class SourceTasks(PipelineStep):
    """The only step of a multi-source phase: global rank -> (source, its own rank), then that chain."""

    name = "🔀 per-source tasks"
    type = "🔀 - ROUTER"

    def __init__(self, chains: dict[str, tuple[list, int]], stats_dir: str | Path):
        super().__init__()
        self.chains = chains  # source -> (datatrove steps, tasks of that source), in source order
        self.stats_dir = str(stats_dir)

    @property
    def world_size(self) -> int:
        return sum(tasks for _, tasks in self.chains.values())

    def locate(self, rank: int) -> tuple[str, int, int]:
        for source, (_, tasks) in self.chains.items():
            if rank < tasks:
                return source, rank, tasks
            rank -= tasks
        raise IndexError(f"rank beyond the {self.world_size} tasks of this phase")

    def run(self, data, rank: int = 0, world_size: int = 1):
        source, local, tasks = self.locate(rank)
        steps = self.chains[source][0]
        pipelined = None
        for step in steps:
            pipelined = step(pipelined, local, tasks)
        if pipelined is not None:
            deque(pipelined, maxlen=0)
        folder = Path(self.stats_dir) / source
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / f"{local:05d}.json", PipelineStats(steps).to_json())
        yield from ()


def source_stats(folder: Path) -> list[dict]:
    """The merged stats of one source's tasks (datatrove's stats.json format); [] when none ran."""
    parts = sorted(Path(folder).glob("[0-9]*.json"))
    if not parts:
        return []
    merged = sum((PipelineStats.from_json(json.loads(p.read_text())) for p in parts), start=PipelineStats())
    return json.loads(merged.to_json())
