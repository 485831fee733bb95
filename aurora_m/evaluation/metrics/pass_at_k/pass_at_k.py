"""pass@k as an ``evaluate`` metric, loaded from this folder with no download: the call of ``evaluate``'s
``code_eval`` (candidates per problem + a test program per problem), but every program runs in aurora-m's
sandbox (namespaces, Landlock, limits; ``AURORA_M_ALLOW_CODE_EXECUTION=1`` opts in), not in a thread::

    import evaluate
    from aurora_m.evaluation import METRICS

    pass_at_k = evaluate.load(str(METRICS / "pass_at_k"))
    pass_at_k.compute(predictions=[["def add(a, b):\\n    return a + b"]], references=["assert add(1, 2) == 3"], k=[1])
    # {"pass@1": 1.0, "results": [[{"status": "passed", ...}]]}

Each program is ``candidate + "\\n" + reference``; pass@k is the unbiased estimator over each problem's n
candidates (a k above a problem's n is not reported).
"""

import datasets
import evaluate

from aurora_m.evaluation.code.passk import mean_pass_at_k
from aurora_m.evaluation.code.sandbox import Job, LocalSandbox

_INPUTS = """
Args:
    predictions (list of list of str): candidate programs per problem.
    references (list of str): a test program per problem (asserts).
    k (list of int): the k of pass@k (default [1, 10, 100]).
    num_workers (int): programs run at once (0: one per core).
    timeout (float): seconds per program.
    memory_mb (int): address-space limit per program.
Returns:
    pass@k for each k, and results: per problem, per candidate, {status, seconds}.
"""


class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Unbiased pass@k of generated programs, run in aurora-m's sandbox.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("string")), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 10, 100), num_workers=0, timeout=3.0, memory_mb=1024):
        jobs = [
            Job(f"{candidate}\n{test}", timeout_s=timeout, memory_mb=memory_mb)
            for candidates, test in zip(predictions, references)
            for candidate in candidates
        ]
        outcomes = LocalSandbox(workers=num_workers).run(jobs)
        results, i = [], 0
        for candidates in predictions:
            results.append([{"status": o.status, "seconds": o.seconds} for o in outcomes[i : i + len(candidates)]])
            i += len(candidates)
        samples = [len(c) for c in predictions]
        correct = [sum(r["status"] == "passed" for r in rs) for rs in results]
        return {**mean_pass_at_k(samples, correct, list(k)), "results": results}
