"""The data step of a stage: sources -> (tokenized, mixed, packed) dataset folder.

A pretraining dataset folder (:class:`aurora_m.layout.DatasetDir`) holds the ``input_ids`` blocks
(``datasets`` on disk), the tokenizer they were made with, the mixture report (what was read, set
aside, tokenized, cut, drawn and dropped) and its plot. An SFT dataset folder holds prompt/completion
rows and a sources report. Folders appear only when complete.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ..args import MixtureArguments, ModelArguments, SFTDataArguments, SourceSpec
from ..errors import RecipeError
from ..io import atomic_dir, write_json
from ..layout import DatasetDir
from ..plots import plot_mixture
from ..tokenizer import load_tokenizer
from .mixture import mix_and_pack
from .sources import load_source, read_source

logger = logging.getLogger(__name__)


def build_pretrain_dataset(model_args: ModelArguments, mix_args: MixtureArguments, out_dir: str | Path,
                           config_file: str | Path = "<stage config>", title: str = "mixture") -> Path:
    if mix_args.train_tokens <= 0:
        raise RecipeError(config_file, "train_tokens", "expected the stage's token budget (a positive integer)")
    if mix_args.max_doc_tokens <= 0:
        raise RecipeError(config_file, "max_doc_tokens", "expected a positive number of tokens per document")
    tokenizer = load_tokenizer(model_args, config_file)
    specs = [SourceSpec(**raw) for raw in mix_args.mixture]
    sources, reports = {}, []
    for spec in specs:
        sources[spec.name], report = read_source(spec, str(config_file), "mixture")
        reports.append(asdict(report))

    def encode(texts: list[str]) -> list[list[int]]:
        # verbose=False: documents longer than the model's context are expected here (they are cut and packed)
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    blocks, mixture = mix_and_pack(sources, {s.name: float(s.weight) for s in specs}, mix_args.train_tokens,
                                   mix_args.seq_length, tokenizer.eos_token_id, mix_args.mixture_seed, encode,
                                   max_doc_tokens=mix_args.max_doc_tokens)
    if len(blocks) == 0:
        raise RecipeError(config_file, "train_tokens", f"budget {mix_args.train_tokens} is smaller than one "
                                                       f"sequence of {mix_args.seq_length} tokens")
    mixture["read"] = reports
    mixture["tokenizer_vocab"] = len(tokenizer)
    from datasets import Dataset

    with atomic_dir(out_dir) as tmp:
        staged = DatasetDir(tmp)
        Dataset.from_dict({"input_ids": blocks}).save_to_disk(str(staged.train))
        tokenizer.save_pretrained(staged.tokenizer)
        write_json(staged.mixture_json, mixture)
        plot_mixture(mixture, staged.mixture_png, title)
    _log_mixture(mixture)
    return Path(out_dir)


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


def _log_mixture(mixture: dict) -> None:
    logger.info("%d sequences x %d = %s tokens (budget %s, tail dropped %d)", mixture["sequences"],
                mixture["seq_length"], f"{mixture['tokens']:,}", f"{mixture['budget_tokens']:,}",
                mixture["dropped_tail_tokens"])
    for s, r in zip(mixture["sources"], mixture["read"]):
        cut = f", {s['docs_cut']} cut to {mixture['max_doc_tokens']} tokens" if s["docs_cut"] else ""
        logger.info("  %10s: weight %g -> %.1f%% of tokens, %.2f epochs%s; read %d, empty removed %d, "
                    "not text removed %d, held out %d, capped %d", s["name"], s["weight"], 100 * s["share"],
                    s["epochs"], cut, r["docs_read"], r["removed_empty"], r["removed_not_text"],
                    r["set_aside_by_split"], r["capped"])
