"""Evaluation: per-language perplexity on held-out text (code, harness and safety suites come next)."""
