"""The GPTBigCode model config nanotron reads (``model.model_config`` of its YAML), and its transformers twin.

nanotron at the pinned commit has no GPTBigCode config; ``ModelArgs.model_config`` is typed
``Union[LlamaConfig, Starcoder2Config, Qwen2Config, Any]``, and a mapping that matches none of them is turned
into a ``Qwen2Config`` by ``ModelArgs.__post_init__``. The engine's entry point therefore reads the YAML with a
``Config`` whose ``model.model_config`` is this dataclass (:mod:`.entry`). It is a plain dataclass (no
nanotron import) so that config emission and conversion run without nanotron.

Field names follow nanotron's ``Starcoder2Config`` where the starcoder2 building blocks read them (the MQA
attention, MLP and layer norms are reused); the learned positions are ``max_position_embeddings`` rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# transformers GPTBigCodeConfig key -> ours (the rest of the transformers config is kept in hf_extra)
HF_KEYS = {
    "vocab_size": "vocab_size",
    "n_positions": "max_position_embeddings",
    "n_embd": "hidden_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_inner": "intermediate_size",
    "activation_function": "activation_function",
    "layer_norm_epsilon": "layer_norm_epsilon",
    "attn_pdrop": "attn_pdrop",
    "resid_pdrop": "resid_pdrop",
    "embd_pdrop": "embd_pdrop",
    "initializer_range": "initializer_range",
    "bos_token_id": "bos_token_id",
    "eos_token_id": "eos_token_id",
    "pad_token_id": "pad_token_id",
    "scale_attn_weights": "scale_attn_weights",
    "multi_query": "multi_query",
}
# transformers' bookkeeping, not the model: never carried into nanotron's YAML
HF_DROPPED = (
    "_name_or_path",
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "model_type",
    "tie_word_embeddings",
    "_attn_implementation_autoset",
)


@dataclass
class GPTBigCodeConfig:
    vocab_size: int = 49152
    max_position_embeddings: int = 2048
    hidden_size: int = 6144
    num_hidden_layers: int = 40
    num_attention_heads: int = 48
    intermediate_size: int | None = None  # None: 4 x hidden_size
    activation_function: str = "gelu"
    layer_norm_epsilon: float = 1e-5
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    initializer_range: float = 0.02
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0
    pad_token_id: int | None = None
    scale_attn_weights: bool = True
    multi_query: bool = True
    is_gpt_bigcode_config: bool = True  # tells this config apart from nanotron's own in a YAML
    hf_extra: dict = field(default_factory=dict)  # the rest of the transformers config, written back on export

    def __post_init__(self):
        if not self.multi_query:
            raise ValueError("the nanotron GPTBigCode model implements multi-query attention (multi_query: true)")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} heads")
        self._is_using_mup = False

    # --- what nanotron's Config and its starcoder2 blocks read
    @property
    def num_key_value_heads(self) -> int:
        # nanotron's Config.__post_init__ checks kv heads >= tp and heads % kv heads == 0 (for GQA sharding).
        # MQA's single K/V head is replicated on every TP rank (tied across TP), i.e. every query head has
        # its own copy: as many as query heads.
        return self.num_attention_heads

    @property
    def n_inner(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_using_mup(self) -> bool:
        return self._is_using_mup

    # starcoder2 block switches, fixed for GPTBigCode
    grouped_query = False
    use_rotary_embeddings = False
    rope_theta = 10000
    sliding_window_size = None
    global_attn_layers = ()
    num_kv_heads = None
    tie_word_embeddings = True

    # --- transformers
    @classmethod
    def from_hf(cls, hf: dict) -> GPTBigCodeConfig:
        ours = {ours: hf[key] for key, ours in HF_KEYS.items() if key in hf}
        extra = {k: v for k, v in hf.items() if k not in HF_KEYS and k not in HF_DROPPED}
        return cls(**ours, hf_extra=extra)

    def to_hf(self) -> dict:
        out = {"architectures": ["GPTBigCodeForCausalLM"], "model_type": "gpt_bigcode", **self.hf_extra}
        out.update({key: getattr(self, ours) for key, ours in HF_KEYS.items()})
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GPTBigCodeConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"not GPTBigCodeConfig keys: {', '.join(sorted(unknown))}")
        return cls(**data)
