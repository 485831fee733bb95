"""What a script (``scripts/pretrain.py``, ``sft.py``, ``data.py``) may write into: the rule of ``aurora-m``.

A script's ``--output_dir`` is a stage folder of the script's own: new or empty (claimed with
:attr:`StageDir.script_claim`, naming the configuration), or claimed by an earlier script run of the
same configuration (a resume). Refused, before any work: a folder of the user's (anything in it and no
claim), a folder inside a run folder (``aurora-m`` owns those: its markers would no longer say what is
there), and a folder whose data, checkpoints or model were made by another configuration (a CAT
script pointed at CAP's folder would resume CAP's finished checkpoints and train nothing).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from ..errors import RecipeError
from ..io import read_json_or_none, write_json
from ..layout import StageDir, owning_folder
from ..stages import KINDS
from .fingerprint import describe_changes, result_config

logger = logging.getLogger(__name__)


def _values(args) -> dict:
    if hasattr(args, "to_dict"):  # TrainingArguments: its own serialisable view
        return args.to_dict()
    return dataclasses.asdict(args) if dataclasses.is_dataclass(args) else {}


def script_prints(kind: str, parsed) -> dict[str, dict]:
    """The keys that make a script's data and its training, as the parsed dataclasses hold them."""
    values = {}
    for args in parsed:
        values.update(_values(args))
    # where the data is read from, and which rank this process is, change no result
    values = {k: v for k, v in values.items() if k not in ("dataset_dir", "local_rank") and not k.startswith("_")}
    data_keys = KINDS[kind].data_keys() if KINDS[kind].data_step else set()
    prints = {"data": result_config(values, data_keys), "train": result_config(values)}
    return json.loads(json.dumps(prints, default=str))  # as the claim file holds them


def claim_output_dir(output_dir: str | Path, kind: str, parsed, config_file, dataset_dir: str | None) -> StageDir:
    """Check ``output_dir`` as this module's docstring says, then claim it for this configuration (the main process
    of the launch; the other ranks read what it checked)."""
    dirs = StageDir(Path(output_dir).resolve())
    if os.environ.get("RANK", "0") != "0":
        return dirs
    if owner := owning_folder(dirs.root):
        raise RecipeError(
            output_dir,
            "--output_dir",
            f"is inside the {owner[1]} {owner[0]}, whose files aurora-m keeps track of: choose a folder outside it "
            f"(to run a stage of that run use `aurora-m train RECIPE_DIR --stage NAME --output-dir {owner[0]}`); "
            "nothing was changed",
        )
    prints = script_prints(kind, parsed)
    claim = read_json_or_none(dirs.script_claim)
    if dirs.root.is_dir() and any(dirs.root.iterdir()) and claim is None:
        raise RecipeError(
            output_dir,
            "--output_dir",
            f"holds files no aurora-m script wrote (no {dirs.script_claim.name}): choose a new or empty folder; "
            "nothing in it was touched",
        )
    if claim is not None:
        _check_claim(claim, prints, dirs, str(Path(config_file).resolve()), output_dir, dataset_dir)
    write_json(dirs.script_claim, {"kind": kind, "config": str(Path(config_file).resolve()), **prints})
    return dirs


def _check_claim(claim: dict, prints: dict, dirs: StageDir, config: str, output_dir, dataset_dir) -> None:
    """A dataset of other data keys is refused (a script reuses a built dataset as is); checkpoints and a model of
    another stage YAML are refused (a CAT script in CAP's folder would resume CAP's last checkpoint and train
    nothing); the same YAML with other training keys resumes, saying what changed (extending max_steps is one)."""
    owner = f"{claim.get('config', '?')} ({claim.get('kind', '?')})"
    trained = bool(dirs.checkpoints()) or dirs.model.exists()
    data_changes = describe_changes(claim.get("data") or {}, prints["data"])
    if dirs.data.is_built() and not dataset_dir and data_changes:
        problem = f"its dataset {dirs.data.root.name}/ was built for another configuration, {owner}"
        raise RecipeError(
            output_dir,
            "--output_dir",
            f"{problem} ({'; '.join(data_changes[:4])}): choose another --output_dir; nothing was changed",
        )
    if trained and claim.get("config") != config:
        raise RecipeError(
            output_dir,
            "--output_dir",
            f"its checkpoints and model belong to another configuration, {owner}: choose another --output_dir "
            "(a model to continue from is given with --model_name_or_path); nothing was changed",
        )
    train_changes = describe_changes(claim.get("train") or {}, prints["train"])
    if trained and train_changes:
        logger.warning(
            "%s: its checkpoints were trained with another configuration (%s): resuming from them",
            output_dir,
            "; ".join(train_changes[:6]),
        )
