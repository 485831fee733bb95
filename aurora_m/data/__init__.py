"""Data: read sources, split held-out text by a stable hash, mix by token budget, tokenize and pack."""
