"""The keys a stage YAML may hold, as dataclasses TrlParser fills (next to TrainingArguments / SFTConfig).

A stage YAML is one flat mapping: the model keys, the data keys and the trainer keys side by side,
alignment-handbook style. Scalars can be overridden on the command line (``--seq_length 512``);
lists of sources are edited in the YAML (TrlParser cannot override nested structures).
Relative paths are relative to the YAML file's folder, so a recipe folder can be copied anywhere.
The eval and publish keys live with their stage packages (``evaluation/arguments.py``, ``hub/arguments.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import ModelConfig


@dataclass
class ModelArguments(ModelConfig):
    """trl's ``ModelConfig`` (``model_name_or_path``, ``dtype``, ``attn_implementation``, ``use_peft``,
    ``lora_*``; ``trl.get_peft_config(model_args)``) plus what a recipe adds: a base config to build from (any
    causal LM's config.json; StarCoderPlus's bundled), config patches, and the tiny twins' locally trained
    tokenizer."""

    base_config: str | None = field(
        default=None,
        metadata={
            "help": "Build a fresh model from this config instead: a bundled name "
            "('starcoderplus') or a config.json path. "
            "Used when model_name_or_path is unset."
        },
    )
    config_patches: list[str] = field(
        default_factory=list,
        metadata={"help": "Patches applied in order: aurora_m, tiny, tokenizer_vocab, dtype:NAME, attn:NAME."},
    )
    model_seed: int = field(default=0, metadata={"help": "Seed of the random init when building from base_config."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to use; defaults to the one stored with the model."}
    )
    tokenizer_train_files: list[str] = field(
        default_factory=list, metadata={"help": "Train a byte-level BPE on these jsonl files (the tiny twin)."}
    )
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "Vocabulary size of a trained tokenizer."})
    init_from: str = field(
        default="weights",
        metadata={
            "help": "How a stage continues its input model: 'weights' (fresh optimizer, "
            "the schedule from step 0, warmup re-warms) or 'full_state' (the "
            "upstream's optimizer state and schedule position carried on)."
        },
    )
    init_state_from: str | None = field(
        default=None,
        metadata={
            "help": "full_state: the upstream checkpoint folder to carry on from (default: "
            "the newest complete checkpoint beside model_name_or_path)."
        },
    )
    # read by the training run only (LoRA and the hand-off): editing them must not rebuild the dataset
    TRAIN_ONLY_KEYS: ClassVar[tuple[str, ...]] = (
        "use_peft",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_target_parameters",
        "lora_modules_to_save",
        "lora_task_type",
        "use_rslora",
        "use_dora",
        "init_from",
        "init_state_from",
    )


INIT_FROM = ("weights", "full_state")  # ModelArguments.init_from
SFT_FORMATS = ("messages", "prompt_completion")  # SFTDataArguments.sft_format
LOCAL_PATH_KEYS = ("lm_eval_include_path",)


@dataclass
class MixtureArguments:
    mixture: list[dict] = field(
        default_factory=list, metadata={"help": "Sources with weights; see SourceSpec for the keys of one source."}
    )
    seq_length: int = field(default=2048, metadata={"help": "Tokens per packed training sequence."})
    train_tokens: int = field(
        default=0,
        metadata={
            "help": "Token budget of the stage's dataset (required): sources' absolute tokens, "
            "then the replay share, then the rest by weight or temperature; small sources "
            "repeat (up to max_epochs), large ones are subsampled."
        },
    )
    mixture_seed: int = field(default=1234, metadata={"help": "Seed of document order and sampling."})
    dataset_dir: str | None = field(
        default=None,
        metadata={"help": "Where the packed dataset lives (built there if absent). Defaults to OUTPUT_DIR/data."},
    )
    max_doc_chars: int = field(
        default=1_000_000,
        metadata={
            "help": "Documents longer than this many characters are removed (counted as "
            "too_long in filter_report.json)."
        },
    )
    # --- mixing: each source takes `tokens`, or a share of what is left by `weight` or by `temperature`
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "Split what the absolute budgets leave by natural size: p ~ n^(1/T) "
            "(1 = natural proportions; larger flattens). Sources then set no weight."
        },
    )
    replay_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of the budget drawn from the sources marked replay: true (the base "
            "model's own distribution, English + code), by natural size."
        },
    )
    max_epochs: float = field(
        default=4.0, metadata={"help": "Refuse a mixture that repeats a source more often than this."}
    )
    # --- cleaning (datatrove): what each document goes through, in this order
    language_id_min_score: dict = field(
        default_factory=dict,
        metadata={
            "help": "Per-language confidence a prose document needs from language id (LID-176, offline), "
            "e.g. {en: 0.5}; a language not named has its measured floor (0.1; Swahili 0.01, on its own "
            "probability whatever the top label, see language_id_any_rank)."
        },
    )
    language_id_any_rank: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Languages LID-176 ranks below other labels on clean text (see benchmarks/language_id_real.py): "
            "their own probability must reach the floor, whatever the top label; Swahili always is (measured)."
        },
    )
    language_settings: dict = field(
        default_factory=dict,
        metadata={
            "help": "Per-language filter settings over the defaults, e.g. {ko: {gopher_quality: "
            "{min_avg_word_length: 1}}}; keys: the quality filters' names."
        },
    )
    mislabelled: str = field(
        default="drop",
        metadata={
            "help": "A prose document in another of the stage's languages: 'drop' it, or "
            "'reroute' it to the first source of its language."
        },
    )
    quality_filters: list[str] = field(
        default_factory=lambda: ["gopher_quality", "gopher_repetition", "c4", "fineweb"],
        metadata={
            "help": "Prose quality heuristics, with per-language settings: gopher_quality, "
            "gopher_repetition, c4, fineweb."
        },
    )
    quality_overrides: dict = field(
        default_factory=dict,
        metadata={
            "help": "Per-filter keyword arguments for every language, e.g. {gopher_quality: {min_doc_words: 30}} "
            "(one language: language_settings)."
        },
    )
    max_symbol_digit_ratio: float | None = field(
        default=None,
        metadata={
            "help": "Remove prose whose share of digits and symbols is above this (the "
            "paper's CAT filter); unset: off."
        },
    )
    toxicity_filter: bool = field(default=True, metadata={"help": "Remove prose that hits the toxic word lists."})
    pii_anonymise: bool = field(
        default=True, metadata={"help": "Replace emails, phone numbers and IP addresses with placeholders."}
    )
    minhash_dedup: bool = field(
        default=True, metadata={"help": "MinHash near-duplicate removal within and across sources."}
    )
    fim_rate: float = field(
        default=0.5, metadata={"help": "Share of code documents rewritten fill-in-the-middle (StarCoder's tokens)."}
    )
    fim_spm_rate: float = field(default=0.5, metadata={"help": "Share of FIM documents in SPM rather than PSM order."})
    keep_removed: bool = field(
        default=True, metadata={"help": "Keep every removed document (by source and filter) for inspection."}
    )
    # --- execution
    intermediate_file_mb: float = field(
        default=64,
        metadata={
            "help": "Cleaned and deduplicated documents are written in gzip files of at most "
            "this size, one later task each: a task's memory stays the same whatever "
            "the corpus size."
        },
    )
    data_workers: int = field(default=1, metadata={"help": "Local processes running datatrove tasks."})
    data_tasks: int = field(
        default=1, metadata={"help": "datatrove tasks per source (a task reads a share of the source's files)."}
    )
    data_executor: str = field(
        default="local", metadata={"help": "'local' (processes here) or 'slurm' (datatrove's Slurm executor)."}
    )
    slurm_partition: str | None = field(default=None, metadata={"help": "Slurm partition of the data jobs."})
    slurm_time: str = field(default="24:00:00", metadata={"help": "Slurm time limit of one data job."})
    slurm_cpus_per_task: int = field(default=1, metadata={"help": "CPUs per datatrove task on Slurm."})
    slurm_mem_per_cpu_gb: int = field(default=2, metadata={"help": "Memory per CPU on Slurm (GB)."})
    # --- monitoring during training (eval_strategy / eval_steps say when)
    heldout_blocks: int = field(
        default=32,
        metadata={
            "help": "Per language, windows of seq_length tokens packed from held-out documents "
            "(holdout_fraction) by the data step: the held-out loss evaluated during "
            "training (eval_<lang>_loss). 0: none, no monitoring."
        },
    )
    forgetting_probes: list[str] = field(
        default_factory=lambda: ["code_ppl"],
        metadata={
            "help": "What the forgetting monitor measures at each "
            "evaluation, against the first one: code_ppl "
            "(perplexity of held-out code)."
        },
    )
    forgetting_threshold: float = field(
        default=1.2,
        metadata={
            "help": "Warn when a forgetting probe is this many times worse than at the first "
            "evaluation (code perplexity x1.2, say)."
        },
    )
    contamination_sources: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "Held-out test prompts (take: heldout of the red-team set, eval prompts) that no training "
            "document may contain, exactly or nearly: the data step fails naming the rows."
        },
    )
    leakage_threshold: float = field(
        default=0.7, metadata={"help": "Character 5-gram Jaccard similarity from which a text is a near duplicate."}
    )
    # read by the training run only: editing them must not rebuild the dataset
    TRAIN_ONLY_KEYS: ClassVar[tuple[str, ...]] = (
        "forgetting_probes",
        "forgetting_threshold",
    )


@dataclass
class SFTDataArguments:
    sft_sources: list[dict] = field(
        default_factory=list,
        metadata={"help": "What the stage teaches: instruction pairs (format: instruction) or chats (messages)."},
    )
    helpful_sources: list[dict] = field(
        default_factory=list,
        metadata={"help": "General instructions mixed in so safety tuning does not become blanket refusal."},
    )
    helpfulness_share: float = field(
        default=0.0, metadata={"help": "Share of the SFT rows drawn from helpful_sources (0 <= x < 1)."}
    )
    sft_format: str = field(
        default="messages",
        metadata={
            "help": "messages (chat template, assistant-only loss) or prompt_completion (completion-only "
            "loss); both render the same Instruction/Response text."
        },
    )
    contamination_sources: list[dict] = field(
        default_factory=list,
        metadata={"help": "Held-out test prompts no SFT row may contain, exactly or nearly (the data step fails)."},
    )
    leakage_threshold: float = field(
        default=0.7, metadata={"help": "Character 5-gram Jaccard similarity from which a text is a near duplicate."}
    )
    mixture_seed: int = field(default=1234, metadata={"help": "Seed of document order and sampling."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Where the SFT dataset lives. Defaults to OUTPUT_DIR/data."}
    )
