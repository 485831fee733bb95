"""A deterministic train/test split of a labelled set, stratified by category.

Why each rule:

- stratified: a category with few rows (CBRN has far fewer than general harm) still gets test rows, and its
  share of the test side is its share of the set: for each category the test count is
  ``round(test_fraction * n_category)`` (Python's round), so it is within half a row of the overall share;
- deterministic from the rows alone: within a category, rows are ordered by a blake2b hash of their normalised
  instruction (not by file order, not by a seed), so the same set gives the same split whoever reads it and
  in whatever order: CAT, SFT and evaluation agree;
- duplicates together: rows whose normalised instructions are equal are one unit, on one side, even across
  categories; otherwise a test prompt would also be trained on. Units are taken in hash order while they fit
  the category's count (first fit), so a category's test count is exact unless a duplicate group does not fit
  the gap left (then it falls short by less than that group's size) or a group was already placed by an
  earlier category (then its rows count where they fell). Only duplicate groups straddling the cut move a
  category's count off ``round(test_fraction * n)``.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from .leakage import normalize


def _order(key: str) -> tuple[bytes, str]:
    """Position of a unit in its category: a stable hash, not Python's (salted per process)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), key


def stratified_split(instructions: Sequence[str], categories: Sequence[str], test_fraction: float) -> np.ndarray:
    """A bool array over the rows: True for the rows on the test side."""
    if len(instructions) != len(categories):
        raise ValueError(f"{len(instructions)} instructions but {len(categories)} categories")
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    keys = [normalize(str(text or "")) for text in instructions]
    rows_of: dict[str, list[int]] = defaultdict(list)  # unit (normalised instruction) -> its rows
    units_in: dict[object, set[str]] = defaultdict(set)  # category -> its units
    for i, (key, category) in enumerate(zip(keys, categories)):
        rows_of[key].append(i)
        units_in[category].add(key)
    is_test = np.zeros(len(keys), dtype=bool)
    decided: set[str] = set()
    for category in sorted(units_in, key=lambda c: (c is None, str(c))):
        mine = [i for key in units_in[category] for i in rows_of[key] if categories[i] == category]
        want = round(test_fraction * len(mine))
        taken = int(is_test[mine].sum())  # rows of groups an earlier category placed
        for key in sorted(units_in[category] - decided, key=_order):
            size = sum(1 for i in rows_of[key] if categories[i] == category)
            if taken + size <= want:
                is_test[rows_of[key]] = True  # every row of the unit, in every category
                taken += size
            decided.add(key)
    return is_test


def split_report(categories: Sequence[str], is_test) -> dict[str, dict[str, int]]:
    """Per category (sorted): total, train and test rows, for the data step's report."""
    is_test = np.asarray(is_test, dtype=bool)
    if len(categories) != len(is_test):
        raise ValueError(f"{len(categories)} categories but {len(is_test)} split flags")
    totals = Counter(categories)
    tests = Counter(c for c, test in zip(categories, is_test.tolist()) if test)
    return {
        c: {"total": totals[c], "train": totals[c] - tests[c], "test": tests[c]}
        for c in sorted(totals, key=lambda c: (c is None, str(c)))
    }
