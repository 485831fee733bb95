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

from ..args import MixtureArguments, ModelArguments, SFTDataArguments
from ..io import atomic_dir, write_json
from ..layout import DatasetDir
from ..source_spec import source_specs
from .sources import read_source

logger = logging.getLogger(__name__)


def build_pretrain_dataset(
    model_args: ModelArguments,
    mix_args: MixtureArguments,
    out_dir: str | Path,
    config_file: str | Path = "<stage config>",
    title: str = "mixture",
) -> Path:
    """Clean, deduplicate, tokenize and mix the stage's sources (see :mod:`aurora_m.data.corpus`)."""
    from .corpus import build_corpus

    return build_corpus(model_args, mix_args, out_dir, config_file, title)


def _read_chats(sources: list[dict], key: str, config_file):
    """Every source of one list as chats, with the source's name and a row id naming its file row."""
    from datasets import concatenate_datasets

    parts, reports = [], []
    for spec in source_specs(sources, key, config_file):
        docs, report = read_source(spec, str(config_file), key, prompt_completion=True)
        ds = docs.to_chats()
        ds = ds.add_column("source", [spec.name] * len(ds))
        parts.append(ds.add_column("row", [f"{spec.name} row {r + 1}" for r in docs.rows.tolist()]))
        reports.append(asdict(report))
    return (concatenate_datasets(parts) if parts else None), reports


def _helpful_rows(pool, share: float, n_target: int, seed: int, config_file):
    """The general instructions mixed in: ``share`` of the final rows (all of the pool when it is smaller)."""
    want = round(share * n_target / (1 - share)) if share > 0 else 0
    if want == 0 or pool is None:
        return None, {"share": share, "wanted": want, "rows": 0}
    if len(pool) < want:
        logger.warning(
            "%s: helpfulness_share %.2f wants %d general instruction rows; helpful_sources hold %d: "
            "all of them are used (share %.2f)",
            config_file,
            share,
            want,
            len(pool),
            len(pool) / (len(pool) + n_target),
        )
    taken = pool.shuffle(seed=seed).select(range(min(want, len(pool))))
    return taken, {"share": share, "wanted": want, "rows": len(taken)}


def _as_prompt_completion(ds):
    """Conversational prompt/completion: every turn before the last reply is the prompt (no loss on it)."""

    def split(row):
        turns = row["messages"]
        last = max(i for i, t in enumerate(turns) if t["role"] == "assistant")
        return {"prompt": turns[:last], "completion": [turns[last]]}

    return ds.map(split, remove_columns=["messages"])


def build_sft_dataset(
    data_args: SFTDataArguments, out_dir: str | Path, config_file: str | Path = "<stage config>"
) -> Path:
    """The stage's chats (its sources plus a helpfulness share of general instructions), checked against the
    held-out test prompts, in the stage's ``sft_format``; both formats render with the Aurora-M template."""
    from collections import Counter

    from datasets import concatenate_datasets

    from ..prompt import messages_text
    from .contamination import check_rows

    taught, reports = _read_chats(data_args.sft_sources, "sft_sources", config_file)
    pool, helpful_reports = _read_chats(data_args.helpful_sources, "helpful_sources", config_file)
    helpful, helpfulness = _helpful_rows(
        pool, data_args.helpfulness_share, len(taught), data_args.mixture_seed, config_file
    )
    ds = concatenate_datasets([taught, helpful]) if helpful is not None else taught
    ds = ds.shuffle(seed=data_args.mixture_seed)
    checked = check_rows(
        ((row, messages_text(chat)) for row, chat in zip(ds["row"], ds["messages"])),
        data_args.contamination_sources,
        data_args.leakage_threshold,
        config_file,
    )
    report = {
        "rows": len(ds),
        "format": data_args.sft_format,
        "read": reports + helpful_reports,
        "rows_by_source": dict(Counter(ds["source"])),
        "rows_by_category": dict(Counter(ds["category"])),
        "helpfulness": {**helpfulness, "realised": round(helpfulness["rows"] / max(1, len(ds)), 4)},
        "contamination": {"test_prompts": checked, "leaks": 0},
    }
    if data_args.sft_format == "prompt_completion":
        ds = _as_prompt_completion(ds)
    with atomic_dir(out_dir) as tmp:
        staged = DatasetDir(tmp)
        ds.save_to_disk(str(staged.train))
        write_json(staged.sources_json, report)
    logger.info(
        "%d SFT rows (%s) from %d source(s), %d general instruction row(s) mixed in; none holds any of "
        "%d held-out test prompts",
        len(ds),
        data_args.sft_format,
        len(reports),
        helpfulness["rows"],
        checked,
    )
    return Path(out_dir)
