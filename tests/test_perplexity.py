"""Perplexity per document with a sliding window: every token scored once, with the context the window allows."""

from __future__ import annotations

import math

import pytest

from aurora_m.evaluation.perplexity import document_windows


@pytest.mark.parametrize(
    "length,seq,stride", [(5, 8, 4), (8, 8, 4), (9, 8, 4), (30, 8, 3), (100, 16, 16), (17, 16, 1)]
)
def test_sliding_windows_score_every_token_once_within_the_context(length, seq, stride):
    ids = list(range(length))
    windows = document_windows(ids, seq, stride)
    scored = []
    for window, n in windows:
        assert len(window) <= seq and window == ids[window[0] : window[0] + len(window)]
        scored.extend(window[len(window) - n :])
    assert scored == ids[1:]  # each token after the first, once, in order (the first has nothing to predict it)
    if length > seq:
        assert len(windows) == 1 + math.ceil((length - seq) / stride)
        for window, n in windows[1:]:  # later windows keep seq - stride tokens of context (or all there is)
            assert len(window) - n >= min(seq - stride, window[0] + len(window) - n)


def test_the_metric_module_loads_offline_and_weights_by_tokens(tiny_run):
    import evaluate

    from aurora_m.evaluation import METRICS

    ppl = evaluate.load(str(METRICS / "perplexity"))
    texts = ["hello world, this is a test", "def f(x):\n    return x"]
    out = ppl.compute(predictions=texts, model_id=str(tiny_run / "cap" / "model"), max_length=16)
    assert len(out["perplexities"]) == 2 and out["tokens"] > 0
    assert min(out["perplexities"]) <= out["perplexity"] <= max(out["perplexities"])
