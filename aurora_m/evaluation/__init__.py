"""Evaluation suites (perplexity, code in a sandbox, lm-eval harness, safety), reports, and the project's metrics
as ``evaluate`` modules: ``evaluate.load(str(METRICS / "perplexity"))`` (also ``pass_at_k``, ``refusal_rate``).
The stage itself does not import ``evaluate`` (an optional extra, ``[metrics]``): the modules wrap its functions."""

from pathlib import Path

METRICS = Path(__file__).parent / "metrics"
