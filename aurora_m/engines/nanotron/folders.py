"""What a nanotron stage writes into its stage folder, beside the files every stage has (``layout.StageDir``).

The engine owns these names: the pipeline learns of them only through the engine's hooks (``checkpoints``,
``set_aside``), so another engine brings its own module like this one and ``layout.py`` stays engine-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aurora_m.layout import StageDir


@dataclass(frozen=True)
class NanotronDirs:
    stage: StageDir

    @property
    def checkpoints(self) -> Path:
        """nanotron's checkpoints folder (``<step>/`` per save, ``latest.txt``): what the stage resumes from."""
        return self.stage.root / "nanotron"

    @property
    def init(self) -> Path:
        """The input model converted to nanotron's layout (weights only): where CAP starts."""
        return self.stage.root / "nanotron-init"

    @property
    def logs(self) -> Path:
        """One log per node of a multi-node launch (``train-JOBID-nodeN.log``, appended on a requeue)."""
        return self.stage.root / "nanotron-logs"

    @property
    def losses(self) -> Path:
        """One JSON line per logged step of the nanotron launches (a relaunch appends; the last line of a step
        wins): the stage's ``log_history.json`` and loss plot are made from it at export."""
        return self.stage.root / "nanotron-losses.jsonl"

    @property
    def config(self) -> Path:
        """The nanotron YAML of the latest launch, as emitted from the stage YAML."""
        return self.stage.root / "nanotron.yaml"

    def steps(self) -> list[Path]:
        """nanotron's step folders (``nanotron/N``), oldest first: the checkpoints of a nanotron stage."""
        folder = self.checkpoints
        found = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
        return sorted(found, key=lambda p: int(p.name))
