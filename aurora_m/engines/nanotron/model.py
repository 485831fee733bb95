"""GPTBigCode for nanotron: multi-query attention with learned absolute positions, tied head (GPU only).

nanotron's starcoder2 model has the multi-query attention (one K/V head replicated on every TP rank, query
heads split), the GELU MLP and the layer norms of GPTBigCode, but rotary positions and no learned position
matrix. This model reuses those blocks with rotary embeddings switched off, and adds the position matrix to
the embedding block (replicated across TP, so nanotron ties it across the TP group like a layer norm). The
parameter names are the ones :mod:`.checkpoint` writes, so converted weights load as they are; the layout is
checked on a CPU by :mod:`.reference`. nanotron is imported inside :func:`classes` only.

The starcoder2 blocks call ``maybe_rotary(q, k, past_key_values_length=...)`` and, with rotary embeddings off,
fall back to a lambda that does not take that keyword: each block gets an identity that does.
"""

# No ``from __future__ import annotations``: dacite reads the config dataclasses' field types, and a string
# naming a class local to classes() resolves in no module's namespace.
import functools


def _no_rotary(query, key, past_key_values_length=0):
    return query, key


@functools.cache
def classes():
    """(GPTBigCodeForTraining, AuroraConfig): the model class for ``DistributedTrainer(model_class=...)`` and
    the config class that reads ``model.model_config`` as :class:`.modelconfig.GPTBigCodeConfig`."""
    from dataclasses import dataclass

    import torch
    from nanotron.config import Config, ModelArgs
    from nanotron.config.models_config import SpectralMupInit
    from nanotron.config.utils_config import cast_str_to_torch_dtype
    from nanotron.models import starcoder2 as sc2
    from nanotron.parallel.pipeline_parallel.block import PipelineBlock
    from nanotron.parallel.tensor_parallel.enum import TensorParallelLinearMode
    from nanotron.parallel.tensor_parallel.nn import TensorParallelColumnLinear, TensorParallelEmbedding
    from nanotron.random import branch_random_state
    from torch import nn

    from .modelconfig import GPTBigCodeConfig

    @dataclass
    class AuroraModelArgs(ModelArgs):
        model_config: GPTBigCodeConfig

        def __post_init__(self):  # ModelArgs' own turns an unknown model_config mapping into a Qwen2Config
            if self.dtype is None:
                self.dtype = torch.bfloat16
            if isinstance(self.dtype, str):
                self.dtype = cast_str_to_torch_dtype(self.dtype)
            self.model_config._is_using_mup = isinstance(self.init_method, SpectralMupInit)

    @dataclass
    class AuroraConfig(Config):
        model: AuroraModelArgs

    class Embedding(nn.Module):
        """Token embedding (vocabulary-parallel) plus the learned position matrix (replicated)."""

        def __init__(self, tp_pg, config: GPTBigCodeConfig, parallel_config):
            super().__init__()
            mode = parallel_config.tp_mode if parallel_config is not None else TensorParallelLinearMode.ALL_REDUCE
            self.token_embedding = TensorParallelEmbedding(
                num_embeddings=config.vocab_size, embedding_dim=config.hidden_size, pg=tp_pg, mode=mode
            )
            self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

        def forward(self, input_ids, input_mask):  # [batch, seq] -> [seq, batch, hidden]
            # transformers' GPTBigCode: positions count the unmasked tokens (0..seq-1 for a full window)
            positions = (input_mask.long().cumsum(-1) - 1).clamp(min=0)
            embeds = self.token_embedding(input_ids.transpose(0, 1))
            return {"input_embeds": embeds + self.position_embedding(positions.transpose(0, 1))}

    class Block(sc2.GPTBlock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.attn.maybe_rotary = _no_rotary
            # transformers drops the attention output with resid_pdrop (attn_pdrop is inside the attention)
            self.attn_dropout = kwargs["config"].resid_pdrop

    class GPTBigCodeModel(sc2.GPTModel):
        """starcoder2's pipeline graph with our embedding and blocks (the same attribute names)."""

        def __init__(self, config, parallel_context, parallel_config, random_states):
            super().__init__(config, parallel_context, parallel_config, random_states)
            self.token_embeddings.module_builder = Embedding
            for pipeline_block in self.decoder:
                pipeline_block.module_builder = Block

        def forward(self, input_ids, input_mask):
            embeds = self.token_embeddings(input_ids=input_ids, input_mask=input_mask)["input_embeds"]
            with branch_random_state(
                self.random_states, "tp_synced", enabled=self.tp_mode == TensorParallelLinearMode.ALL_REDUCE
            ):
                hidden = self.embeds_dropout(input=embeds)["hidden_states"]
            states = {"hidden_states": hidden, "sequence_mask": input_mask}
            for block in self.decoder:
                states = block(**states)
            hidden = self.final_layer_norm(input=states["hidden_states"])["hidden_states"]
            return self.cast_to_fp32(x=self.lm_head(x=hidden)["logits"])["output"]

    class GPTBigCodeForTraining(sc2.Starcoder2ForTraining):
        def __init__(self, config, parallel_context, parallel_config, random_states):
            sc2.NanotronModel.__init__(self)
            self.model = GPTBigCodeModel(config, parallel_context, parallel_config, random_states)
            self.loss = PipelineBlock(
                p2p=self.model.p2p,
                module_builder=sc2.Loss,
                module_kwargs={"tp_pg": parallel_context.tp_pg},
                module_input_keys={"sharded_logits", "label_ids", "label_mask"},
                module_output_keys={"loss"},
            )
            self.config, self.parallel_config, self.parallel_context = config, parallel_config, parallel_context

        @torch.no_grad()
        def init_model_randomly(self, config):
            """A fresh model (CAP always starts from converted weights; this is for a run from scratch)."""
            std = config.model.init_method.std
            layers = config.model.model_config.num_hidden_layers
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1)
                    module.bias.zero_()
                elif isinstance(module, (TensorParallelEmbedding, nn.Embedding)):
                    nn.init.normal_(module.weight, std=std)
                elif isinstance(module, sc2.TensorParallelRowLinear):
                    nn.init.normal_(module.weight, std=std / (2 * layers) ** 0.5)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, (TensorParallelColumnLinear, sc2.MQAColumnLinears)):
                    nn.init.normal_(module._qkv_weight if hasattr(module, "_qkv_weight") else module.weight, std=std)
                    bias = getattr(module, "_qkv_bias", None) if hasattr(module, "_qkv_weight") else module.bias
                    if bias is not None:
                        bias.zero_()

        def get_block_compute_costs(self):
            cfg = self.config
            return {
                Block: 4 * cfg.hidden_size**2 + 2 * cfg.n_inner * cfg.hidden_size,
                TensorParallelColumnLinear: cfg.vocab_size * cfg.hidden_size,
            }

    return GPTBigCodeForTraining, AuroraConfig
