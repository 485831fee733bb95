"""The shape of a stage's GPTBigCode model, read from the recipe without building it.

Multi-query attention (one shared key/value head), learned absolute positions, a GELU MLP, the output
projection tied to the token embedding: the parameter count follows the modules of transformers'
``GPTBigCodeForCausalLM`` one by one (a test holds it to a built model's count).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_inner: int
    vocab: int
    n_positions: int
    multi_query: bool = True
    attn_pdrop: float = 0.1  # a training step saves a mask per dropout that is on
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    param_bytes: int = 4  # bytes per parameter as stored (dtype: patch)
    attn: str = "sdpa"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_dim(self) -> int:
        return self.head_dim if self.multi_query else self.n_embd

    def layer_params(self) -> int:
        h, f, qkv = self.n_embd, self.n_inner, self.n_embd + 2 * self.kv_dim
        layer_norms = 2 * 2 * h
        attention = h * qkv + qkv + h * h + h  # c_attn, c_proj (weights + biases)
        mlp = h * f + f + f * h + h  # c_fc, c_proj
        return layer_norms + attention + mlp

    def embedding_params(self) -> int:
        return (self.vocab + self.n_positions) * self.n_embd  # wte (tied to lm_head) + wpe

    def params(self) -> int:
        return self.embedding_params() + self.n_layer * self.layer_params() + 2 * self.n_embd  # + ln_f

    def buffer_bytes(self) -> int:
        """The causal-mask buffer (``transformer.bias``: n_positions x n_positions booleans)."""
        return self.n_positions**2


def shape_from_config(config: dict, vocab: int | None = None, param_bytes: int = 4, attn: str = "sdpa") -> ModelShape:
    """A GPTBigCode config mapping (config.json keys) -> its shape; ``vocab`` overrides (a trained tokenizer's)."""
    n_embd = int(config["n_embd"])
    return ModelShape(
        n_layer=int(config["n_layer"]),
        n_embd=n_embd,
        n_head=int(config["n_head"]),
        n_inner=int(config.get("n_inner") or 4 * n_embd),
        vocab=int(vocab or config["vocab_size"]),
        n_positions=int(config["n_positions"]),
        multi_query=bool(config.get("multi_query", True)),
        attn_pdrop=float(config.get("attn_pdrop", 0.1)),
        resid_pdrop=float(config.get("resid_pdrop", 0.1)),
        embd_pdrop=float(config.get("embd_pdrop", 0.1)),
        param_bytes=param_bytes,
        attn=attn,
    )
