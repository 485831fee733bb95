"""The data step of a stage: sources -> (tokenized, mixed, packed) dataset folder.

A pretraining dataset folder (:class:`aurora_m.layout.DatasetDir`) holds one folder of datatrove
token shards per source, the sampling index (the training stream), the tokenizer, the filter report,
the mixture table and its plot (:mod:`aurora_m.data.corpus`). An SFT dataset folder holds
prompt/completion rows and a sources report. Folders appear only when complete.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ..args import MixtureArguments, ModelArguments, SFTDataArguments, SourceSpec
from ..io import atomic_dir, write_json
from ..layout import DatasetDir
from .sources import load_source

logger = logging.getLogger(__name__)


def build_pretrain_dataset(model_args: ModelArguments, mix_args: MixtureArguments, out_dir: str | Path,
                           config_file: str | Path = "<stage config>", title: str = "mixture") -> Path:
    """Clean, deduplicate, tokenize and mix the stage's sources (see :mod:`aurora_m.data.corpus`)."""
    from .corpus import build_corpus

    return build_corpus(model_args, mix_args, out_dir, config_file, title)


def build_sft_dataset(data_args: SFTDataArguments, out_dir: str | Path,
                      config_file: str | Path = "<stage config>") -> Path:
    from datasets import concatenate_datasets

    parts, reports = [], []
    for raw in data_args.sft_sources:
        spec = SourceSpec(**raw)
        ds, report = load_source(spec, str(config_file), "sft_sources", prompt_completion=True)
        parts.append(ds.add_column("source", [spec.name] * len(ds)))
        reports.append(asdict(report))
    ds = concatenate_datasets(parts).shuffle(seed=data_args.mixture_seed)
    with atomic_dir(out_dir) as tmp:
        staged = DatasetDir(tmp)
        ds.save_to_disk(str(staged.train))
        write_json(staged.sources_json, {"rows": len(ds), "read": reports})
    logger.info("%d instruction/response pairs from %d source(s)", len(ds), len(parts))
    return Path(out_dir)
