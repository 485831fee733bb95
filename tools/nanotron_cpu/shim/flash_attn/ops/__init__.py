"""flash-attn's ops package (CPU port)."""
