"""pass@k, the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

With n samples of a problem of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the probability that at
least one of k samples drawn without replacement passes. The ratio of binomials is computed as the product
prod_{i=n-c+1}^{n} (1 - k/i), which stays exact-ish in floating point for any n (C(200, 100) overflows
nothing here).
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from ``n`` samples, ``c`` of them correct."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], ks: Sequence[int] = (1,)) -> dict[str, float]:
    """Mean over problems of pass@k for each k: ``{"pass@1": ..., "pass@10": ...}``. Problem i had
    ``samples[i]`` samples, ``correct[i]`` of them correct; a k above some problem's sample count is left out
    (it cannot be estimated)."""
    if len(samples) != len(correct) or not samples:
        raise ValueError(
            f"mean_pass_at_k needs one sample count and one correct count per problem (at least one), "
            f"got {len(samples)} and {len(correct)}"
        )
    fewest = min(samples)
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in zip(samples, correct)) / len(samples)
        for k in ks
        if k <= fewest
    }
