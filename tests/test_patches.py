"""GPTBigCode config patches: the Aurora-M trim, the tiny shape, dtype and attention choices."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from aurora_m.patches import apply_config_patches, apply_model_patches, load_base_config, parse_patch


def test_starcoderplus_config_matches_the_paper():
    cfg = load_base_config("starcoderplus")
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner) == (40, 6144, 48, 24576)
    assert cfg.multi_query and cfg.num_key_value_heads == 1
    assert (cfg.n_positions, cfg.vocab_size) == (8192, 49152)


def test_aurora_m_patch_trims_positions_and_leaves_the_original_alone():
    base = load_base_config("starcoderplus")
    patched = apply_config_patches(base, ["aurora_m"])
    assert patched.n_positions == 2048 and patched.pad_token_id == 0
    assert base.n_positions == 8192  # a copy was patched
    assert patched.n_layer == 40


def test_tiny_patch_keeps_multi_query_and_learned_positions():
    cfg = apply_config_patches(load_base_config("starcoderplus"), ["aurora_m", "tiny"])
    assert cfg.n_layer == 2 and cfg.n_embd == 128 and cfg.n_embd % cfg.n_head == 0
    assert cfg.multi_query and cfg.num_key_value_heads == 1
    cfg.vocab_size = 256
    model = AutoModelForCausalLM.from_config(cfg)
    assert model.transformer.wpe.weight.shape == (2048, 128)  # learned absolute positions, no RoPE
    head_dim = cfg.n_embd // cfg.n_head
    assert model.transformer.h[0].attn.c_attn.weight.shape == (cfg.n_embd + 2 * head_dim, cfg.n_embd)


def test_aurora_m_patch_on_weights_keeps_the_first_rows_and_the_outputs():
    cfg = apply_config_patches(load_base_config("starcoderplus"), ["tiny", "dtype:float32"])
    cfg.vocab_size, cfg.n_positions = 256, 64
    cfg.attn_pdrop = cfg.resid_pdrop = cfg.embd_pdrop = 0.0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    ids = torch.randint(0, 256, (2, 20))
    before_rows = model.transformer.wpe.weight[:32].detach().clone()
    with torch.no_grad():
        before = model(ids).logits
    apply_model_patches(model, ["aurora_m:32"])
    assert model.config.n_positions == 32
    assert torch.equal(model.transformer.wpe.weight, before_rows)
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(before, after)


def test_dtype_and_attention_patches():
    cfg = apply_config_patches(load_base_config("starcoderplus"), ["tiny", "dtype:bfloat16", "attn:eager"])
    cfg.vocab_size = 256
    model = AutoModelForCausalLM.from_config(cfg)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize(
    "spec,message",
    [("huge", "unknown patch"), ("dtype", "needs a value"), ("dtype:float8", None), ("attn:fast", None)],
)
def test_bad_patches_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        apply_config_patches(load_base_config("starcoderplus"), [spec])


def test_tiny_patch_refuses_trained_weights():
    cfg = apply_config_patches(load_base_config("starcoderplus"), ["tiny"])
    cfg.vocab_size = 256
    with pytest.raises(ValueError, match="built from a config"):
        apply_model_patches(AutoModelForCausalLM.from_config(cfg), ["tiny"])
    assert parse_patch("attn:eager")[1] == "eager"


def test_an_untrained_tiny_model_predicts_uniformly_its_first_loss_is_ln_vocab():
    """The independent anchor of the tiny goldens (tests/golden/*_losses.json): a freshly built model (the
    tiny recipe's config and patches) is near-uniform over its vocabulary, so its loss on any text is
    ln(vocab_size), whatever code computes it; the golden CAP curve starts there."""
    import math

    import torch

    from aurora_m.args import ModelArguments
    from aurora_m.train.model import load_model

    vocab = 4096  # the tiny recipe's tokenizer_vocab_size
    ids = {"eos_token_id": 0, "bos_token_id": 0, "pad_token_id": 0}  # <|endoftext|>, as the trained tokenizer's
    tokenizer = type("Vocabulary", (), {"__len__": lambda self: vocab, **ids})()
    patches = ["aurora_m", "tiny", "tokenizer_vocab", "dtype:float32", "attn:sdpa"]
    model = load_model(ModelArguments(base_config="starcoderplus", config_patches=patches, model_seed=0), tokenizer)
    ids = torch.randint(0, vocab, (8, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert loss == pytest.approx(math.log(vocab), rel=0.01)
