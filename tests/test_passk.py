"""pass@k: the unbiased estimator against its closed form, computed exactly."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from aurora_m.evaluation.code import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 3, 1, 0.3),  # pass@1 is the fraction correct
        (10, 0, 5, 0.0),  # nothing correct
        (10, 10, 1, 1.0),
        (10, 8, 3, 1.0),  # n - c < k: every draw of 3 holds a correct one
        (5, 1, 5, 1.0),
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (20, 1, 10, 0.5),  # a single correct sample is in half of the draws of 10 out of 20
    ],
)
def test_known_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


CASES = [
    (n, c, k)
    for n in (1, 2, 7, 10, 50, 200)
    for c in sorted({0, 1, n // 3, n // 2, n - 1, n})
    for k in (1, 2, 5, 10, 100)
    if k <= n
]


@pytest.mark.parametrize("n, c, k", CASES)
def test_matches_the_closed_form_exactly_computed(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(exact(n, c, k)), rel=1e-9, abs=1e-12)


def test_large_n_stays_finite_where_binomials_overflow_floats():
    n, c, k = 2000, 37, 100  # C(2000, 100) ~ 1e180 fits a float, C(2000, 1000) does not
    assert pass_at_k(n, c, k) == pytest.approx(float(exact(n, c, k)), rel=1e-9)
    assert 0.0 <= pass_at_k(2000, 1, 1000) <= 1.0
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


def test_mean_over_problems_for_several_k():
    rates = mean_pass_at_k([10, 10, 10], [3, 0, 10], ks=(1, 10))
    assert rates["pass@1"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)
    assert rates["pass@10"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)


def test_a_k_beyond_the_samples_is_left_out_of_the_mean():
    assert set(mean_pass_at_k([5, 20], [1, 2], ks=(1, 5, 10))) == {"pass@1", "pass@5"}
    with pytest.raises(ValueError):
        mean_pass_at_k([5, 5], [1], ks=(1,))


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)])
def test_impossible_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
