"""THE table of model families: what the project needs to know about a base model's architecture, per family.

A recipe's base model is any transformers causal LM. What differs between families, and what validation,
the config patches, LoRA, training and the model card read, is here once per family (in the manner of
torchtitan's model specs), keyed by a ``config.json``'s ``model_type``:

- where the config keeps its context length, depth, width and heads (GPTBigCode and GPT-2 say ``n_positions``,
  ``n_layer``, ``n_embd``, ``n_head``; Llama-style configs ``max_position_embeddings``, ``num_hidden_layers``, ...);
- how it encodes positions (a learned position matrix, which the ``aurora_m`` patch can trim, or rotary);
- how many key/value heads it has (GPTBigCode: one with ``multi_query``; Llama-style: ``num_key_value_heads``);
- its linear layers (LoRA's default targets) and the engines that can train it (nanotron: GPTBigCode only).

Light: plain mappings (a ``config.json`` read as JSON, or ``PretrainedConfig.to_dict()``), no transformers import,
so ``aurora-m validate`` reads it offline in milliseconds. A family not in the table still trains on the
transformers engine through the generic entry (standard key names, LoRA on ``all-linear``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LEARNED = "learned"  # an absolute position matrix (rows can be trimmed, not added)
ROTARY = "rotary"  # positions rotate q and k: no parameters, a trained context length
ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer but the output head


def _heads_kv(heads_key: str, kv_key: str) -> Callable[[dict], int | None]:
    def kv(config: dict) -> int | None:
        return config.get(kv_key) or config.get(heads_key)

    return kv


@dataclass(frozen=True)
class ModelFamily:
    model_type: str  # config.json's model_type
    name: str  # how the card and messages name the architecture
    positions: str  # LEARNED or ROTARY ("" when the table does not know)
    positions_key: str  # the config key of the context length
    layers_key: str
    width_key: str
    heads_key: str
    kv_heads: Callable[[dict], int | None]  # key/value heads from the config mapping
    linear_layers: tuple[str, ...] = ()  # LoRA's default targets (empty: all-linear)
    position_matrix: str | None = None  # the module path of the learned position matrix
    engines: tuple[str, ...] = ("transformers",)  # engines that can train it

    @property
    def learned_positions(self) -> bool:
        return self.positions == LEARNED


_GPT_KEYS = {"positions_key": "n_positions", "layers_key": "n_layer", "width_key": "n_embd", "heads_key": "n_head"}
_LLAMA_KEYS = {
    "positions_key": "max_position_embeddings",
    "layers_key": "num_hidden_layers",
    "width_key": "hidden_size",
    "heads_key": "num_attention_heads",
    "kv_heads": _heads_kv("num_attention_heads", "num_key_value_heads"),
}
_LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

FAMILIES: dict[str, ModelFamily] = {
    f.model_type: f
    for f in (
        ModelFamily(
            "gpt_bigcode",
            "GPTBigCode",
            LEARNED,
            **_GPT_KEYS,
            # multi-query attention: every query head shares one key/value head
            kv_heads=lambda c: 1 if c.get("multi_query", True) else c.get("n_head"),
            linear_layers=("c_attn", "c_proj", "c_fc"),  # fused q/kv, outputs, MLP input (lm_head is tied)
            position_matrix="transformer.wpe",
            engines=("transformers", "nanotron"),
        ),
        ModelFamily(
            "gpt2",
            "GPT-2",
            LEARNED,
            **_GPT_KEYS,
            kv_heads=lambda c: c.get("n_head"),
            linear_layers=("c_attn", "c_proj", "c_fc"),  # Conv1D layers, which peft adapts too
            position_matrix="transformer.wpe",
        ),
        ModelFamily("llama", "Llama", ROTARY, **_LLAMA_KEYS, linear_layers=_LLAMA_LINEAR),
        ModelFamily("mistral", "Mistral", ROTARY, **_LLAMA_KEYS, linear_layers=_LLAMA_LINEAR),
        ModelFamily("qwen2", "Qwen2", ROTARY, **_LLAMA_KEYS, linear_layers=_LLAMA_LINEAR),
        ModelFamily(
            "starcoder2",
            "StarCoder2",
            ROTARY,
            **_LLAMA_KEYS,
            linear_layers=("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"),
        ),
    )
}


def family_of(config: dict) -> ModelFamily:
    """The family of a config mapping; a model type the table does not list gets the generic entry."""
    model_type = str(config.get("model_type") or "")
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    return ModelFamily(model_type or "unknown", model_type or "unknown", "", **_LLAMA_KEYS)


@dataclass(frozen=True)
class ModelFacts:
    """One model's architecture as a config mapping states it (after the recipe's patches)."""

    family: ModelFamily
    positions: int | None
    layers: int | None
    width: int | None
    heads: int | None
    kv_heads: int | None
    vocab_size: int | None
    bos_token_id: int | list | None
    eos_token_id: int | list | None

    @property
    def model_type(self) -> str:
        return self.family.model_type

    def attention(self) -> str:
        if not (self.heads and self.kv_heads) or self.kv_heads == self.heads:
            return "multi-head attention"
        if self.kv_heads == 1:
            return "multi-query attention (one key/value head)"
        return f"grouped-query attention ({self.kv_heads} key/value heads)"

    def describe(self) -> str:
        """One line for a model card: ``GPTBigCode (`gpt_bigcode`): 2 layers, width 128, 4 heads with multi-query
        attention (one key/value head), 2,048 learned positions, vocabulary 4,096``."""
        parts = [f"{self.layers} layers" if self.layers else "", f"width {self.width}" if self.width else ""]
        if self.heads:
            parts.append(f"{self.heads} heads with {self.attention()}")
        if self.positions:
            parts.append(
                {
                    LEARNED: f"{self.positions:,} learned positions",
                    ROTARY: f"rotary positions (context {self.positions:,})",
                }.get(self.family.positions, f"context {self.positions:,}")
            )
        if self.vocab_size:
            parts.append(f"vocabulary {self.vocab_size:,}")
        return f"{self.family.name} (`{self.model_type}`): " + ", ".join(p for p in parts if p)


def model_facts(config: dict) -> ModelFacts:
    """The facts of a config mapping (a config.json, or a transformers config's ``to_dict()``)."""
    family = family_of(config)
    return ModelFacts(
        family=family,
        positions=config.get(family.positions_key),
        layers=config.get(family.layers_key),
        width=config.get(family.width_key),
        heads=config.get(family.heads_key),
        kv_heads=family.kv_heads(config),
        vocab_size=config.get("vocab_size"),
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
    )


def _ids(value) -> set[int]:
    return set(value) if isinstance(value, list) else ({value} if value is not None else set())


def tokenizer_mismatch(facts: ModelFacts, vocab: int, eos_id: int | None, bos_id: int | None = None) -> str | None:
    """Why a config's vocabulary and special ids do not fit a tokenizer of ``vocab`` tokens (None: they fit).

    A config's vocabulary may be larger than the tokenizer (rows padded to a multiple), never smaller; its eos
    id(s) must include the tokenizer's (generation and packing stop there), and a bos it states must agree."""
    problems = []
    if facts.vocab_size is not None and vocab > facts.vocab_size:
        problems.append(f"vocab_size {facts.vocab_size} < the tokenizer's {vocab} tokens")
    if eos_id is not None and _ids(facts.eos_token_id) and eos_id not in _ids(facts.eos_token_id):
        problems.append(f"eos_token_id {facts.eos_token_id} != the tokenizer's eos id {eos_id}")
    if bos_id is not None and _ids(facts.bos_token_id) and bos_id not in _ids(facts.bos_token_id):
        problems.append(f"bos_token_id {facts.bos_token_id} != the tokenizer's bos id {bos_id}")
    return "; ".join(problems) or None
