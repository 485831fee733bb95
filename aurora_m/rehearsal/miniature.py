"""The miniature of a real recipe: its own stage YAMLs rewritten so every stage runs on a CPU in seconds.

What changes, and nothing else (the report states each):

- **model**: the recipe's own config chain (``model_name_or_path``'s config.json, as bundled in
  ``aurora_m/configs`` or a local folder; or ``base_config``) shrunk through the family table to a few layers of a
  small width (:data:`SHAPE`; multi-query / grouped key-value heads and learned or rotary positions kept), then the
  recipe's own ``config_patches`` with ``dtype:float32`` (CPU) and ``tokenizer_vocab``; weights random-initialised.
- **tokenizer**: the recipe's own when it is reachable here (files it trains on, a local folder), else the
  byte-level BPE trained on the sampled text (``sample-text.jsonl``), as the tiny twin trains its own.
- **sources**: the same entries (same builder, columns, split rules), each Hub split bounded to its first
  ``rows`` rows (``split: NAME[:rows]``, the stage's own streamed read); local files keep their paths.
- **budgets**: every ``train_tokens`` divided by ONE factor (:func:`scale_factor`: the smallest pretraining
  stage keeps :data:`MIN_STEPS` steps at the miniature's shape, sequences of :data:`SEQ` tokens in one
  process); held-out windows, eval blocks, problems, samples and prompts cut to the least that runs each
  path; epoch caps lifted (a few rows are not the corpus: its passes are the full run's question).
- **execution**: the data step runs locally in one task (``data_executor: local``); float32, no bf16, CPU.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import yaml

from ..errors import RecipeError
from ..io import write_json, write_text
from ..roots import PIPELINE_FILE, resolve_path
from .mini_model import SHAPE, base_model_config, real_tokenizer, shrink

logger = logging.getLogger(__name__)

MINIATURE = "miniature"  # the rewritten recipe, under the rehearsal's output folder
SEQ = 32  # tokens per miniature training sequence and eval block (a recorded row can be that short)
SFT_LENGTH = 128  # tokens per miniature SFT example (a prompt and its reply)
MIN_STEPS = 2  # the smallest pretraining stage trains this many steps
SAMPLE_TEXT = "sample-text.jsonl"
TOKENIZER_VOCAB = 2048
SOURCE_LISTS = (
    "mixture",
    "contamination_sources",
    "sft_sources",
    "helpful_sources",
    "perplexity_sources",
    "safety_sources",
    "benign_sources",
)
PATH_KEYS = ("lm_eval_include_path", "tokenizer_name_or_path")
# eval sizes: the least that runs every path (pass@k needs k <= samples)
EVAL_SIZES = {
    "max_eval_blocks": 2,
    "code_max_problems": 1,
    "code_samples": 2,
    "code_k": [1, 2],
    "code_max_new_tokens": 16,
    "code_batch_size": 2,
    "code_timeout_s": 5,
    "safety_max_prompts": 1,
    "safety_max_new_tokens": 8,
    "lm_eval_limit": 2,
    "lm_eval_batch_size": 2,
    "per_device_eval_batch_size": 2,
}
# without the opt-in the miniature's eval runs its other suites; the run itself refuses before its first step
CODE_NOT_RUN = (
    "AURORA_M_ALLOW_CODE_EXECUTION is not set here, so model-written programs are not run; set "
    "AURORA_M_ALLOW_CODE_EXECUTION=1 where the eval stage runs (aurora-m run refuses before its first step without "
    "it) and here to rehearse the suite"
)
OFFLINE_HARNESS = "recipes/aurora-m-tiny/lm_eval_tasks"  # the project's own lm-eval tasks, no download


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _dump(path: Path, data: dict) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))


def scale_factor(stages: list[tuple[dict, str]]) -> int:
    """ONE factor for every budget: the smallest pretraining stage keeps MIN_STEPS steps at the miniature's
    shape (its per-device batch x accumulation x SEQ tokens a step, one process)."""
    factors = []
    for config, kind in stages:
        if kind == "pretrain" and config.get("train_tokens"):
            per_step = _per_step(config)
            factors.append(config["train_tokens"] / (MIN_STEPS * per_step))
    return max(1, math.floor(min(factors))) if factors else 1


def _per_step(config: dict) -> int:
    return (config.get("per_device_train_batch_size") or 8) * (config.get("gradient_accumulation_steps") or 1) * SEQ


def _bounded_split(split: str, rows: int) -> str:
    from ..source_spec import streamed_split

    name, limit = streamed_split(split)
    return f"{name}[:{min(rows, limit) if limit else rows}]"


def source_id(entry: dict) -> tuple:
    """What identifies the rows a source entry reads (the same rows in every stage that names it)."""
    return tuple(str(entry.get(k)) for k in ("dataset", "path", "config_name", "data_dir", "data_files"))


def miniature_holdouts(samples: dict) -> dict[tuple, float]:
    """source id -> the held-out fraction the miniature uses where the recipe's leaves one side of the sample
    empty (a few rows hold no 1% share): the least that holds out one of the sampled texts (the split is a hash
    of the text, so that is the text with the lowest hash), the same for every stage that reads the source."""
    from ..data.sources import HASH_SPACE, text_hash

    hashes: dict[tuple, set] = {}
    fractions: dict[tuple, float] = {}
    for spec, sample in samples.values():
        if spec.holdout_fraction > 0 and not spec.stratify and sample.split_texts:
            key = source_id(
                {k: getattr(spec, k) for k in ("dataset", "path", "config_name", "data_dir", "data_files")}
            )
            hashes.setdefault(key, set()).update(text_hash(t) for t in sample.split_texts)
            fractions[key] = max(fractions.get(key, 0.0), spec.holdout_fraction)
    out = {}
    for key, found in hashes.items():
        ordered = sorted(found)
        held = sum(h < fractions[key] * HASH_SPACE for h in ordered)
        if 0 < held < len(ordered) or len(ordered) < 2:
            continue
        out[key] = math.ceil((ordered[0] + ordered[1]) / 2 / HASH_SPACE * 1e6) / 1e6  # between the two lowest
    return out


def _sources(entries, rows: int, stage_dir: Path, holdouts: dict):
    """Hub sources bounded to their first rows; local paths made absolute; epoch caps lifted."""
    single = isinstance(entries, dict)
    out = []
    for entry in [entries] if single else entries:
        entry = dict(entry)
        if entry.get("dataset"):
            entry["split"] = _bounded_split(entry.get("split", "train"), rows)
        elif entry.get("path"):
            entry["path"] = str(resolve_path(stage_dir, entry["path"]).resolve())
        if entry.get("holdout_fraction") and not entry.get("stratify") and source_id(entry) in holdouts:
            entry["holdout_fraction"] = holdouts[source_id(entry)]
        entry.pop("max_epochs", None)
        entry.pop("max_docs", None)
        out.append(entry)
    return out[0] if single else out


def rewrite_stage(config: dict, kind: str, stage_dir: Path, rows: int, factor: int, first: bool, model: dict) -> dict:
    """One stage YAML as the miniature runs it (see the module docstring)."""
    out = dict(config)
    for key in SOURCE_LISTS + ("mbpp_source",):
        if out.get(key):
            out[key] = _sources(out[key], rows, stage_dir, model["holdouts"])
    for key in PATH_KEYS:
        if out.get(key) and not str(out[key]).startswith(("hf://",)) and resolve_path(stage_dir, out[key]).exists():
            out[key] = str(resolve_path(stage_dir, out[key]).resolve())
    if out.get("tokenizer_train_files"):
        out["tokenizer_train_files"] = [
            str(resolve_path(stage_dir, f).resolve()) for f in out["tokenizer_train_files"]
        ]
    if first and kind in ("pretrain", "sft"):
        out.pop("model_name_or_path", None)
        out["base_config"] = model["config_file"]
        patches = [p for p in out.get("config_patches", []) if not p.startswith(("dtype:", "tiny"))]
        patches = [p if not p.startswith("attn:flash") else "attn:sdpa" for p in patches]
        if model["tokenizer_vocab"] and "tokenizer_vocab" not in patches:
            patches.append("tokenizer_vocab")
        out["config_patches"] = [*patches, "dtype:float32"]
        out.update(model["tokenizer_keys"])
    for key in ("bf16", "fp16", "tf32"):
        if key in out:
            out[key] = False
    if kind in ("pretrain", "sft"):
        out.update(use_cpu=True, report_to="none", dataloader_num_workers=0, logging_steps=1)
    elif kind == "eval":
        out.update(use_cpu=True, report_to="none")
    if kind == "pretrain":
        _pretrain(out, factor)
    elif kind == "sft":
        out["max_length"] = SFT_LENGTH
        out.pop("max_steps", None)
        out["num_train_epochs"] = 1
        out["save_strategy"] = "epoch"
        out.pop("save_steps", None)
    elif kind == "eval":
        out["seq_length"] = SEQ
        out.update({k: v for k, v in EVAL_SIZES.items()})
    if isinstance(out.get("warmup_steps"), int) and out["warmup_steps"] >= 1:
        out["warmup_steps"] = 1
    return out


def _pretrain(out: dict, factor: int) -> None:
    out["seq_length"] = SEQ
    per_step = _per_step(out)
    steps = max(1, out["train_tokens"] // factor // per_step)
    out["train_tokens"] = steps * per_step
    if "max_steps" in out:
        out["max_steps"] = steps
    out["max_epochs"] = 1_000_000  # a few rows are not the corpus: passes are the full run's question
    out.update(data_executor="local", data_tasks=1, data_workers=1)
    for key in ("slurm_partition", "slurm_time", "slurm_cpus_per_task", "slurm_mem_per_cpu_gb"):
        out.pop(key, None)
    out.update(eval_steps=steps, save_steps=steps, save_total_limit=1)
    if out.get("heldout_blocks"):
        out["heldout_blocks"] = 2
    out["per_device_eval_batch_size"] = 2


def build_miniature(recipe, out: Path, rows: int, recorded: bool, report: dict, samples: dict) -> Path:
    """Write ``out/miniature/`` (pipeline.yaml + the stage YAMLs rewritten); the report says what changed."""
    mini = out / MINIATURE
    if mini.exists():
        shutil.rmtree(mini)
    mini.mkdir()
    shutil.copyfile(out / "sample" / "texts.jsonl", mini / SAMPLE_TEXT)
    configs = [(_yaml(s.config), s.kind) for s in recipe.stages]
    factor = scale_factor(configs)
    first = recipe.stages[0]
    first_yaml = configs[0][0]
    config, origin = base_model_config(first_yaml, first.config.parent, recorded)
    write_json(mini / "model-config.json", shrink(config))
    own_tokenizer = bool(first_yaml.get("tokenizer_train_files") or first_yaml.get("tokenizer_name_or_path"))
    real = None if own_tokenizer else real_tokenizer(first_yaml.get("model_name_or_path"), mini, recorded)
    if own_tokenizer:
        tokenizer_keys, tokenizer = {}, "the recipe's own (its tokenizer keys, paths made absolute)"
    elif isinstance(real, Path):
        tokenizer_keys = {"tokenizer_name_or_path": str(real)}
        tokenizer = f"{first_yaml['model_name_or_path']}'s own, read from the Hub"
    else:
        tokenizer_keys = {"tokenizer_train_files": [SAMPLE_TEXT], "tokenizer_vocab_size": TOKENIZER_VOCAB}
        tokenizer = (
            f"{first_yaml.get('model_name_or_path')}'s not reachable here ({real}): a byte-level BPE of "
            f"{TOKENIZER_VOCAB} tokens trained on the sampled text"
        )
    model = {
        "config_file": "model-config.json",
        "tokenizer_vocab": not own_tokenizer or "tokenizer_vocab" in first_yaml.get("config_patches", []),
        "tokenizer_keys": tokenizer_keys,
        "holdouts": miniature_holdouts(samples),
    }
    changed, harness, left_out, not_run = {}, None, {}, {}
    for stage, (config_yaml, kind) in zip(recipe.stages, configs, strict=True):
        rewritten = rewrite_stage(config_yaml, kind, stage.config.parent, rows, factor, stage is first, model)
        if rewritten.get("mixture"):
            rewritten["mixture"] = _kept_sources(stage.name, rewritten["mixture"], report, left_out)
        if kind == "eval":
            rewritten["suites"], skipped = miniature_suites(rewritten.get("suites") or [])
            not_run.update({f"{stage.name}/{suite}": why for suite, why in skipped.items()})
        if (
            kind == "eval"
            and rewritten.get("lm_eval_tasks")
            and recorded
            and not rewritten.get("lm_eval_include_path")
        ):
            harness = {"recipe_tasks": rewritten["lm_eval_tasks"], "known_to_lm_eval": _known_tasks(rewritten, stage)}
            rewritten.update(_offline_harness(rewritten))
            harness["run_on"] = rewritten.get("lm_eval_tasks")
        _dump(mini / stage.config.name, rewritten)
        changed[stage.name] = {
            k: rewritten.get(k) for k in ("train_tokens", "max_steps", "seq_length") if k in rewritten
        }
        if config_yaml.get("train_tokens"):  # the recipe's own budget, beside the miniature's
            changed[stage.name]["full_train_tokens"] = config_yaml["train_tokens"]
    pipeline = _yaml(recipe.file)
    roots = [str(recipe.dir.resolve())]
    roots += [str(resolve_path(recipe.dir, r).resolve()) for r in pipeline.get("data_roots", [])]
    if recorded:
        roots.append(str((Path(__file__).resolve().parents[2] / OFFLINE_HARNESS).parent))
    pipeline["data_roots"] = [r for r in roots if Path(r).is_dir()]
    _dump(mini / PIPELINE_FILE, pipeline)
    report["miniature"] = {
        "folder": str(mini),
        "scale_factor": factor,
        "scale": f"every train_tokens divided by {factor:,} (the smallest pretraining stage trains {MIN_STEPS} "
        f"steps of {SEQ}-token sequences in one process); epoch caps lifted; a held-out fraction "
        f"that leaves one side of the sample empty raised (holdouts) in every stage alike; held-out windows, "
        f"eval blocks, problems, samples and prompts cut to the least that runs each path",
        "model": f"{origin}, shrunk to {SHAPE['layers']} layers x {SHAPE['width']} wide "
        f"({SHAPE['heads']} heads, the family's key/value heads and positions kept), then the recipe's "
        f"config_patches (dtype float32 on CPU); weights random-initialised",
        "tokenizer": tokenizer,
        "rows_per_source": rows,
        "stages": changed,
        "harness": harness,
        "left_out": left_out,
        "not_run": not_run,
        "holdouts": {"/".join(k for k in key if k != "None"): f for key, f in model["holdouts"].items()},
    }
    return mini


def _kept_sources(stage: str, mixture: list[dict], report: dict, left_out: dict) -> list[dict]:
    """The mixture without the sources whose sampled rows the cleaning chain removed entirely (the data step
    refuses a source with nothing kept): each is named in the report with what removed its rows."""
    kept = []
    for entry in mixture:
        source = next(
            (s for s in report["sources"] if (s["stage"], s["key"], s["name"]) == (stage, "mixture", entry["name"])),
            {},
        )
        after = list(source.get("kept_after", {}).values())
        tokens = source["text_bytes"] / source["bytes_per_token"] if source.get("bytes_per_token") else None
        if tokens is not None and after and after[-1] and tokens * after[-1] / after[0] < 1.5 * SEQ:
            left_out[f"{stage}/{entry['name']}"] = (
                f"its {source['rows_read']} sampled rows hold ~{tokens:.0f} tokens, {after[-1]} of "
                f"{after[0]} documents kept by the cleaning chain: less than a {SEQ}-token training window with "
                f"margin, which the data step refuses; left out of the miniature's data step"
            )
            continue
        if after and after[-1] == 0:
            removed = ", ".join(f"{k} {v}" for k, v in source.get("dropped_by_reader", {}).items())
            steps = " > ".join(f"{k} {v}" for k, v in source["kept_after"].items())
            left_out[f"{stage}/{entry['name']}"] = (
                f"its {source['rows_read']} sampled rows were all removed by the cleaning chain ({steps}"
                + (f"; reader: {removed}" if removed else "")
                + "): left out of the miniature's data step, which refuses a source with nothing kept"
            )
            continue
        kept.append(entry)
    return kept


def miniature_suites(suites: list[str]) -> tuple[list[str], dict[str, str]]:
    """The eval suites the miniature runs, and those it leaves out with why: the code suite needs the opt-in to run
    model-written programs, which this machine may not give (the cluster's eval stage needs it, and `aurora-m run`
    refuses before its first step without it)."""
    from ..evaluation.code.sandbox import code_execution_allowed

    if "code" not in suites or code_execution_allowed():
        return list(suites), {}
    logger.warning("rehearse: the code suite is not run in miniature: %s", CODE_NOT_RUN)
    return [s for s in suites if s != "code"], {"code": CODE_NOT_RUN}


def _known_tasks(config: dict, stage) -> int:
    """The recipe's lm-eval task names, each checked in lm-eval's own registry (a typo stops here in one line,
    not in the eval stage after training); how many there are."""
    from types import SimpleNamespace

    from ..evaluation.harness import check_tasks

    names = SimpleNamespace(
        lm_eval_tasks=config["lm_eval_tasks"],
        lm_eval_num_fewshot=config.get("lm_eval_num_fewshot"),
        lm_eval_include_path=None,
    )
    try:
        return len(check_tasks(names, stage.config))
    except RecipeError as err:
        raise RecipeError(err.file, err.key, f"stage {stage.name}: {err.message}") from err


def _offline_harness(config: dict) -> dict:
    """Against the recorded Hub lm-eval's own datasets are not served: the recipe's task names are checked in
    lm-eval's registry (in :mod:`.mini_run`), and the suite runs on the project's offline tasks."""
    folder = Path(__file__).resolve().parents[2] / OFFLINE_HARNESS
    if not folder.is_dir():
        return {"suites": [s for s in config.get("suites", []) if s != "harness"]}
    return {
        "lm_eval_include_path": str(folder),
        "lm_eval_tasks": {"en": [{"task": "aurora_mc_en", "num_fewshot": 0}]},
    }
