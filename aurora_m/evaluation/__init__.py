"""Evaluation suites (perplexity, code in a sandbox, lm-eval harness, safety), reports, and the project's metrics
as ``evaluate`` modules: ``evaluate.load(str(METRICS / "perplexity"))`` (also ``pass_at_k``, ``refusal_rate``)."""

from pathlib import Path

METRICS = Path(__file__).parent / "metrics"
