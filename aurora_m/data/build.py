"""The data step of a stage: sources -> (tokenized, mixed, packed) dataset folder.

A pretraining dataset folder holds ``train/`` (``input_ids`` blocks, ``datasets`` on disk), the
``tokenizer/`` it was made with, ``mixture.json`` (what was read, set aside, drawn and dropped) and
``mixture.png``. An SFT dataset folder holds ``train/`` (prompt/completion rows) and ``sources.json``.
Folders appear only when complete.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..args import MixtureArguments, ModelArguments, SFTDataArguments, SourceSpec
from ..errors import RecipeError
from ..io import atomic_dir, write_json
from ..plots import plot_mixture
from ..tokenizer import load_tokenizer
from .mixture import mix_and_pack
from .sources import load_source


def dataset_dir_for(data_args, training_args) -> Path:
    """Where a stage's dataset lives: ``dataset_dir`` if set, else OUTPUT_DIR/data."""
    return Path(data_args.dataset_dir or Path(training_args.output_dir) / "data")


def _tokenize(ds, tokenizer, num_proc):
    def encode(batch):
        return {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}

    return ds.map(encode, batched=True, remove_columns=ds.column_names, num_proc=num_proc,
                  desc="tokenize")["input_ids"]


def build_pretrain_dataset(model_args: ModelArguments, mix_args: MixtureArguments, out_dir: str | Path,
                           config_file: str | Path = "<stage config>", title: str = "mixture") -> Path:
    if mix_args.train_tokens <= 0:
        raise RecipeError(config_file, "train_tokens", "expected the stage's token budget (a positive integer)")
    tokenizer = load_tokenizer(model_args)
    specs = [SourceSpec(**raw) for raw in mix_args.mixture]
    tokenized, reports = {}, []
    for spec in specs:
        docs, report = load_source(spec, str(config_file), "mixture")
        tokenized[spec.name] = _tokenize(docs, tokenizer, mix_args.data_num_proc)
        reports.append(asdict(report))
    blocks, mixture = mix_and_pack(tokenized, {s.name: float(s.weight) for s in specs}, mix_args.train_tokens,
                                   mix_args.seq_length, tokenizer.eos_token_id, mix_args.mixture_seed)
    if len(blocks) == 0:
        raise RecipeError(config_file, "train_tokens",
                          f"budget {mix_args.train_tokens} is smaller than one sequence of {mix_args.seq_length} tokens")
    mixture["read"] = reports
    mixture["tokenizer_vocab"] = len(tokenizer)
    from datasets import Dataset

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        Dataset.from_dict({"input_ids": blocks}).save_to_disk(str(tmp / "train"))
        tokenizer.save_pretrained(tmp / "tokenizer")
        write_json(tmp / "mixture.json", mixture)
        plot_mixture(mixture, tmp / "mixture.png", title)
    _print_mixture(mixture)
    return out_dir


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
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        ds.save_to_disk(str(tmp / "train"))
        write_json(tmp / "sources.json", {"rows": len(ds), "read": reports})
    print(f"[data] {len(ds)} instruction/response pairs from {len(parts)} source(s)")
    return out_dir


def _print_mixture(mixture: dict) -> None:
    print(f"[data] {mixture['sequences']} sequences x {mixture['seq_length']} = {mixture['tokens']:,} tokens "
          f"(budget {mixture['budget_tokens']:,}, tail dropped {mixture['dropped_tail_tokens']})")
    for s, r in zip(mixture["sources"], mixture["read"]):
        print(f"[data]   {s['name']:>10}: weight {s['weight']:g} -> {s['share']:.1%} of tokens, "
              f"{s['epochs']:.2f} epochs; read {r['docs_read']}, empty removed {r['removed_empty']}, "
              f"held out {r['set_aside_by_split']}, capped {r['capped']}")
