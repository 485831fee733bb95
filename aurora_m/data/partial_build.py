"""The identity of a corpus build and the guard of its hidden partial folder: one build at a time per folder
(a lock), resumed only for the same keys and input files, and never over files aurora-m did not write.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from ..args import MixtureArguments, ModelArguments
from ..errors import RecipeError
from ..io import read_json_or_none, write_json
from ..layout import DatasetDir
from ..source_spec import SourceSpec

logger = logging.getLogger(__name__)


def _input_stamp(specs: list[SourceSpec]) -> dict:
    """Size and mtime of every local input file: a partial build is resumed only over the same files."""
    from .intake import local_files

    stamp = {}
    for spec in specs:
        if spec.path is not None:
            for f in local_files(spec):
                st = f.stat()
                stamp[str(f)] = [st.st_size, st.st_mtime_ns]
    return stamp


def _input_sizes(specs: list[SourceSpec]) -> dict[str, int]:
    from .intake import local_files

    return {s.name: sum(f.stat().st_size for f in local_files(s)) if s.path is not None else 0 for s in specs}


def _build_identity(model_args: ModelArguments, mix_args: MixtureArguments, specs: list[SourceSpec]) -> dict:
    keys = {k: v for k, v in asdict(mix_args).items() if k not in ("dataset_dir", *mix_args.TRAIN_ONLY_KEYS)}
    tok = {
        k: getattr(model_args, k)
        for k in ("tokenizer_name_or_path", "tokenizer_train_files", "tokenizer_vocab_size", "model_name_or_path")
    }
    tokenizer_files = {}
    for f in model_args.tokenizer_train_files:
        st = Path(f).stat()
        tokenizer_files[str(f)] = [st.st_size, st.st_mtime_ns]
    ident = {"data_keys": keys, "tokenizer": tok, "tokenizer_files": tokenizer_files, "inputs": _input_stamp(specs)}
    canonical = json.dumps(ident, sort_keys=True, default=str).encode()
    ident["digest"] = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return ident


@contextlib.contextmanager
def _build_lock(partial: DatasetDir, config_file):
    partial.root.mkdir(parents=True, exist_ok=True)
    fh = open(partial.lock, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RecipeError(
            config_file, "dataset_dir", f"another process is building {partial.root}; one build per data folder"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _foreign(folder: DatasetDir) -> list[str]:
    """Names in a data folder (or its partial build) that a build does not write: never deleted by us."""
    ours = {
        p.name
        for p in (
            folder.train,
            folder.tokenizer,
            folder.mixture_json,
            folder.mixture_png,
            folder.sources_json,
            folder.filter_report_json,
            folder.index,
            folder.tokens,
            folder.removed,
            folder.logs,
            folder.work,
            folder.build_json,
            folder.lock,
            folder.heldout,
        )
    }
    ours.add(folder.index.name + ".json")  # the index's own description (stream.index_meta_path)
    return sorted(p.name for p in folder.root.iterdir() if p.name not in ours) if folder.root.is_dir() else []


def _refuse_foreign(folder: DatasetDir, config_file) -> None:
    if foreign := _foreign(folder):
        raise RecipeError(
            folder.root,
            "dataset_dir",
            f"only files a data step writes; it also holds files "
            f"aurora-m did not write ({', '.join(foreign[:3])}): move "
            "them out (aurora-m never deletes them), then run again",
        )


def _start_or_resume(partial: DatasetDir, ident: dict) -> None:
    previous = read_json_or_none(partial.build_json)
    if previous is not None and previous.get("digest") != ident["digest"]:
        logger.info("the partial build in %s was for other keys or input files: starting over", partial.root)
        for child in partial.root.iterdir():  # ours only: _refuse_foreign ran first
            if child != partial.lock:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif previous is not None:
        logger.info("resuming the partial build in %s (finished datatrove tasks are skipped)", partial.root)
    elif any(c != partial.lock for c in partial.root.iterdir()):
        raise RecipeError(
            partial.root,
            "dataset_dir",
            "an empty folder for the build (this one holds files aurora-m did not write: move them out)",
        )
    write_json(partial.build_json, ident)
