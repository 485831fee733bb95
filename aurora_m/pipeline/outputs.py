"""What a step wrote, recorded in its marker: completion is judged by what is on disk, not by the marker alone.

Each file a step wrote is recorded as ``[size, mtime_ns, digest]`` when the step ends (its digest computed
once, then). Checking costs one ``stat`` per file: a file whose size and mtime are those recorded is taken as
written; one whose mtime moved is hashed again, so a same-size edit is caught and a mere ``touch`` is not a
change. At the real recipe's size the one-time digest is a pass over the step's outputs (~750 GB of token
shards for CAP's data step at 377B tokens, ~31 GB of bf16 weights for a 15.5B model: minutes at disk speed,
against hours for the step itself); every later check is a ``stat`` per file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ..io import file_digest
from ..layout import StageDir
from ..stages import StageKind


def _is_step_output(rel: Path) -> bool:
    """For a stage whose one step writes its whole folder (eval, publish): not the run's own records (markers,
    locks, train state at the top) and not another step's data or set-aside checkpoints."""
    top = rel.parts[0]
    return not (top.startswith(".") or top == "data" or top.startswith("set-aside-"))


def step_output_paths(dirs: StageDir, kind: StageKind, step: str) -> list[Path]:
    """Every file ``step`` of a stage wrote that later steps or a push read, as it stands now."""
    if step == kind.data_step:
        roots = [dirs.data.root]
    elif step == kind.resumable_step:  # checkpoints change with each resume; the model is what is read
        roots = [dirs.model, dirs.adapter, dirs.log_history]
    elif len(kind.steps) == 1:  # eval, publish: the step writes the stage's folder
        found = dirs.root.iterdir() if dirs.root.is_dir() else []
        roots = [p for p in found if _is_step_output(p.relative_to(dirs.root))]
    else:  # a kind of more steps that did not say which files are whose: judged by its marker alone
        roots = []
    files = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file()]
    return sorted(files)


def record_outputs(files: list[Path], run_root: Path) -> dict[str, list]:
    """``{path relative to the run folder: [size, mtime_ns, digest]}``."""
    out = {}
    for path in files:
        stat = path.stat()
        out[path.relative_to(run_root).as_posix()] = [stat.st_size, stat.st_mtime_ns, file_digest(path)]
    return out


def output_problem(recorded: dict[str, list] | None, run_root: Path) -> str | None:
    """The first recorded output that is gone or changed (``"cap/model/model.safetensors was deleted"``), or None.
    A marker without records (an older version's) is judged by its marker alone."""
    for rel, (size, mtime_ns, digest) in (recorded or {}).items():
        path = run_root / rel
        try:
            stat = path.stat()
        except OSError:
            return f"{rel} was deleted"
        if not path.is_file():
            return f"{rel} is no longer a file"
        if stat.st_size != size:
            return f"{rel} was changed ({size:,} -> {stat.st_size:,} bytes)"
        if stat.st_mtime_ns != mtime_ns and file_digest(path) != digest:
            return f"{rel} was changed (same size, other content)"
    return None


def _result(outputs: dict) -> dict:
    """What later steps read of a step's outputs: their contents (not the training log, which a resume rewrites)."""
    return {path: record[2] for path, record in outputs.items() if not path.endswith("/log_history.json")}


def run_id_for(previous: dict, fingerprint: str, input_runs: dict, outputs: dict) -> str:
    """A new id for a new result; the old one when the step, run again for the same configuration on the same
    inputs, wrote byte for byte what it wrote before (a deleted model saved again from its final checkpoint):
    what read it stays complete."""
    same = (
        previous.get("run_id")
        and previous.get("fingerprint") == fingerprint
        and previous.get("input_runs") == input_runs
        and _result(previous.get("outputs") or {}) == _result(outputs)
        and outputs
    )
    return previous["run_id"] if same else uuid.uuid4().hex
