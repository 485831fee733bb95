"""flash-attn's triton ops (CPU port): only layer_norm."""
