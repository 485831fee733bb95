"""Rows of the tasks in this folder, read from files beside them (offline, from any working directory)."""

from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def load_local(data_files: dict, **_metadata) -> datasets.DatasetDict:
    """A task's ``custom_dataset``: ``data_files`` ({split: jsonl path}) relative to this folder.

    lm-eval calls it with the task's metadata and ``dataset_kwargs`` as keyword arguments; only
    ``data_files`` matters here.
    """
    files = {split: str(HERE / path) for split, path in data_files.items()}
    return datasets.load_dataset("json", data_files=files)
