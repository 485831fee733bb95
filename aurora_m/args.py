"""The keys a stage YAML may hold, as dataclasses TrlParser fills (next to TrainingArguments / SFTConfig).

A stage YAML is one flat mapping: the model keys, the data keys and the trainer keys side by side,
alignment-handbook style. Scalars can be overridden on the command line (``--seq_length 512``);
lists of sources are edited in the YAML (TrlParser cannot override nested structures).
Relative paths are relative to the YAML file's folder, so a recipe folder can be copied anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from trl import ModelConfig


@dataclass
class ModelArguments(ModelConfig):
    """trl's ``ModelConfig`` (``model_name_or_path``, ``dtype``, ``attn_implementation``, ``use_peft``,
    ``lora_*``; ``trl.get_peft_config(model_args)``) plus what a GPTBigCode recipe adds: a bundled base
    config, config patches, and the tiny twin's locally trained tokenizer."""

    base_config: str | None = field(
        default=None, metadata={"help": "Build a fresh model from this config instead: a bundled name "
                                        "('starcoderplus') or a config.json path. "
                                        "Used when model_name_or_path is unset."})
    config_patches: list[str] = field(
        default_factory=list, metadata={"help": "Patches applied in order: aurora_m, tiny, dtype:NAME, attn:NAME."})
    model_seed: int = field(default=0, metadata={"help": "Seed of the random init when building from base_config."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to use; defaults to the one stored with the model."})
    tokenizer_train_files: list[str] = field(
        default_factory=list, metadata={"help": "Train a byte-level BPE on these jsonl files (the tiny twin)."})
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "Vocabulary size of a trained tokenizer."})


@dataclass
class SourceSpec:
    """One entry of a ``mixture`` / ``sft_sources`` / ``perplexity_sources`` list."""

    name: str
    weight: float = 1.0
    path: str | None = None  # local .jsonl / .json / .parquet file
    dataset: str | None = None  # Hub dataset id (the real recipes)
    config_name: str | None = None
    data_dir: str | None = None  # a folder inside a Hub dataset (the-stack-dedup: data/python)
    split: str = "train"
    format: str = "text"  # text | instruction (Instruction/Response template over three columns)
    text_field: str = "text"
    instruction_field: str = "instruction"
    response_field: str = "response"
    category_field: str = "category"
    holdout_fraction: float = 0.0  # documents set aside by a stable hash of their text
    take: str = "train"  # train | heldout: which side of the hash split this entry reads
    max_docs: int | None = None

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class MixtureArguments:
    mixture: list[dict] = field(
        default_factory=list, metadata={"help": "Sources with weights; see SourceSpec for the keys of one source."})
    seq_length: int = field(default=2048, metadata={"help": "Tokens per packed training sequence."})
    train_tokens: int = field(
        default=0, metadata={"help": "Token budget of the stage's dataset (required), split between sources by "
                                     "weight; small sources repeat, large ones are subsampled."})
    mixture_seed: int = field(default=1234, metadata={"help": "Seed of document order and sampling."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Where the packed dataset lives (built there if absent). "
                                        "Defaults to OUTPUT_DIR/data."})
    max_doc_tokens: int = field(
        default=32768, metadata={"help": "Longer documents are cut to this many tokens (counted in mixture.json), "
                                         "so memory and time follow the budget, not the largest document."})


@dataclass
class SFTDataArguments:
    sft_sources: list[dict] = field(
        default_factory=list, metadata={"help": "Instruction sources (format: instruction) with weights."})
    mixture_seed: int = field(default=1234, metadata={"help": "Seed of document order and sampling."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Where the prompt/completion dataset lives. Defaults to OUTPUT_DIR/data."})


@dataclass
class EvalArguments:
    perplexity_sources: list[dict] = field(
        default_factory=list, metadata={"help": "Held-out text per language; the source name is the language."})
    eval_models: list[str] = field(
        default_factory=list, metadata={"help": "NAME=PATH (or PATH) of the models to evaluate; "
                                                "the pipeline fills this from the stage's inputs."})
    seq_length: int = field(default=2048, metadata={"help": "Tokens per evaluated block."})
    max_eval_blocks: int | None = field(default=None, metadata={"help": "Cap on blocks per language."})


@dataclass
class PublishArguments:
    hub_namespace: str = field(default="aurora-m", metadata={"help": "Repo id of a variant: NAMESPACE/VARIANT."})
    root_model: str = field(
        default="bigcode/starcoderplus", metadata={"help": "base_model of the first stage's card."})
    license: str = field(default="bigcode-openrail-m", metadata={"help": "License id for the cards."})
    language: list[str] = field(
        default_factory=lambda: ["en", "fi", "hi", "ja", "vi", "code"], metadata={"help": "Card languages."})
    tags: list[str] = field(default_factory=lambda: ["aurora-m", "gpt_bigcode", "continual-pretraining"])
    card_datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids for the card."})
