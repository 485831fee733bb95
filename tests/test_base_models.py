"""Base models other than GPTBigCode: the family table, validation's refusals (patches a model cannot take, a
config vocabulary that does not fit the tokenizer, nanotron with a non-GPTBigCode model, LoRA targets), and the
tiny Llama twin (recipes/aurora-m-tiny-llama) end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aurora_m.cli import main
from aurora_m.model_families import model_facts

from conftest import ROOT, TINY, cli, edit_yaml

LLAMA = ROOT / "recipes" / "aurora-m-tiny-llama"


@pytest.fixture()
def llama_copy(tmp_path) -> Path:
    """The tiny Llama recipe beside a copy of the tiny recipe whose data it reads (data_roots: [../aurora-m-tiny])."""
    shutil.copytree(TINY, tmp_path / "aurora-m-tiny")
    return Path(shutil.copytree(LLAMA, tmp_path / "aurora-m-tiny-llama"))


def _refused(recipe: Path, capsys) -> str:
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", ["GPT2Config", "LlamaConfig", "MistralConfig", "Qwen2Config", "Starcoder2Config"])
def test_the_family_table_reads_what_transformers_reads(name):
    """Positions, depth, width and heads from the table equal the config object's own (transformers' attribute
    names, aliases included), for the families the table lists, from the raw mapping a config.json holds."""
    import transformers

    config = getattr(transformers, name)(num_key_value_heads=2) if name != "GPT2Config" else transformers.GPT2Config()
    facts = model_facts(config.to_dict())
    assert facts.model_type == config.model_type
    assert facts.positions == config.max_position_embeddings
    assert (facts.layers, facts.width, facts.heads) == (
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
    )
    assert facts.kv_heads == getattr(config, "num_key_value_heads", config.num_attention_heads)


def test_gptbigcode_stays_multi_query_with_learned_positions():
    from aurora_m.patches import load_base_config

    config = load_base_config("starcoderplus")
    facts = model_facts(config.to_dict())
    assert (facts.positions, facts.heads, facts.kv_heads) == (config.n_positions, 48, config.num_key_value_heads)
    assert facts.kv_heads == 1 and facts.family.learned_positions and "nanotron" in facts.family.engines
    assert "multi-query attention" in facts.describe() and "8,192 learned positions" in facts.describe()
    llama = model_facts(json.loads((LLAMA / "config.json").read_text()))
    assert "grouped-query attention (2 key/value heads)" in llama.describe() and "rotary" in llama.describe()


def test_the_llama_twin_validates():
    assert main(["validate", str(LLAMA)]) == 0


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            '["dtype:float32"',
            '[aurora_m, "dtype:float32"',
            ["config_patches", "'aurora_m'", "learned position", "Llama"],
        ),
        ('["dtype:float32"', '[tiny, "dtype:float32"', ["config_patches", "'tiny'", "GPTBigCode", "llama"]),
        ("seq_length: 64", "seq_length: 4096", ["seq_length", "2048 positions (max_position_embeddings"]),
    ],
)
def test_validate_refuses_what_a_llama_cannot_take(llama_copy, capsys, old, new, words):
    edit_yaml(llama_copy / "cap.yaml", old, new)
    err = _refused(llama_copy, capsys)
    for word in ["cap.yaml", *words]:
        assert word in err, (word, err)


def test_the_nanotron_engine_trains_gptbigcode_only(llama_copy, capsys):
    edit_yaml(llama_copy / "pipeline.yaml", "config: cap.yaml\n", "config: cap.yaml\n    engine: nanotron\n")
    err = _refused(llama_copy, capsys)
    assert "cap.yaml: base_config" in err and "the nanotron engine trains GPTBigCode only" in err, err


def test_a_llama_cat_on_nanotron_is_refused_by_its_input(llama_copy, capsys):
    edit_yaml(llama_copy / "pipeline.yaml", "config: cat.yaml\n", "config: cat.yaml\n    engine: nanotron\n")
    err = _refused(llama_copy, capsys)
    assert "cat.yaml: engine" in err and "from the input stage" in err and "GPTBigCode only" in err, err


@pytest.mark.parametrize(
    "targets, words",
    [
        ("all-linear", None),
        ("[all-linear]", None),
        ("[q_proj, v_proj]", None),
        ("[c_attn]", ["c_attn: not a linear layer of a Llama model", "q_proj"]),
        ("[all-linear, q_proj]", ["all-linear stands alone"]),
    ],
)
def test_lora_targets_follow_the_family(llama_copy, capsys, targets, words):
    edit_yaml(llama_copy / "lora.yaml", "lora_target_modules: all-linear", f"lora_target_modules: {targets}")
    if words is None:
        assert main(["validate", str(llama_copy)]) == 0, capsys.readouterr().err
        return
    err = _refused(llama_copy, capsys)
    for word in ["lora.yaml: lora_target_modules", *words]:
        assert word in err, (word, err)


def test_lora_defaults_and_all_linear_for_gptbigcode(recipe_copy, capsys):
    from aurora_m.train.lora import lora_targets

    assert lora_targets([], {"model_type": "gpt_bigcode"}) == ["c_attn", "c_proj", "c_fc"]
    assert lora_targets(None, {"model_type": "llama"})[:3] == ["q_proj", "k_proj", "v_proj"]
    assert lora_targets([], {"model_type": "some_new_family"}) == "all-linear"
    assert lora_targets(["all-linear"], {"model_type": "llama"}) == "all-linear"
    edit_yaml(
        recipe_copy / "instruct.yaml", "lora_target_modules: [c_attn, c_proj, c_fc]", "lora_target_modules: all-linear"
    )
    assert main(["validate", str(recipe_copy)]) == 0, capsys.readouterr().err


def _gptbigcode_config(folder: Path, **changes) -> None:
    from aurora_m.patches import TINY_SHAPE, read_config_json

    config = {**read_config_json("starcoderplus"), **TINY_SHAPE, "vocab_size": 4096, **changes}
    (folder / "model.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    "changes, patches, words",
    [
        ({"vocab_size": 1000}, "[tiny]", ["vocab_size 1000 < the tokenizer's 4096 tokens", "tokenizer_vocab"]),
        ({"eos_token_id": 5}, "[tiny]", ["eos_token_id 5 != the tokenizer's eos id 0"]),
        # a 1024-position config cannot keep Aurora-M's 2048: caught here, not after the data step
        ({"n_positions": 1024}, "[aurora_m]", ["config_patches", "keeps 2048 positions", "1024 (n_positions)"]),
    ],
)
def test_a_custom_config_is_kept_or_refused_at_validate(recipe_copy, capsys, changes, patches, words):
    _gptbigcode_config(recipe_copy, **changes)
    edit_yaml(recipe_copy / "cap.yaml", "base_config: starcoderplus", "base_config: model.json")
    edit_yaml(
        recipe_copy / "cap.yaml",
        'config_patches: [aurora_m, tiny, tokenizer_vocab, "dtype:float32", "attn:sdpa"]',
        f"config_patches: {patches}",
    )
    err = _refused(recipe_copy, capsys)
    for word in ["cap.yaml", *words]:
        assert word in err, (word, err)


def test_a_custom_config_keeps_its_vocabulary_and_ids(tmp_path, cache_dir):
    """Built from a config.json written for the tokenizer (rows padded past it): vocab_size and the special ids
    stay as written; one whose eos differs is refused in one line when the model is built (scripts run straight)."""
    from aurora_m.args import ModelArguments
    from aurora_m.errors import RecipeError
    from aurora_m.tokenizer import load_tokenizer
    from aurora_m.train.model import load_model

    files = [str(TINY / "data" / f"{name}.jsonl") for name in ("en", "fi", "hi", "ja", "vi", "code")]
    _gptbigcode_config(tmp_path, vocab_size=4160, bos_token_id=0, eos_token_id=0, pad_token_id=None)
    args = ModelArguments(base_config=str(tmp_path / "model.json"), tokenizer_train_files=files)
    tokenizer = load_tokenizer(args)
    model = load_model(args, tokenizer)
    assert len(tokenizer) <= 4096 < model.config.vocab_size == 4160
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (0, 0, None)
    _gptbigcode_config(tmp_path, eos_token_id=7)
    with pytest.raises(RecipeError, match="eos_token_id 7 != the tokenizer's eos id 0") as err:
        load_model(args, tokenizer)
    assert "\n" not in str(err.value)
    args.config_patches = ["tokenizer_vocab"]  # what the tiny twin says: take the tokenizer's
    model = load_model(args, tokenizer)
    assert (model.config.vocab_size, model.config.eos_token_id) == (len(tokenizer), tokenizer.eos_token_id)


def test_the_card_names_the_real_architecture(tmp_path):
    from aurora_m.hub.card import architecture

    shutil.copy(LLAMA / "config.json", tmp_path / "config.json")
    described, model_type = architecture(tmp_path)
    assert model_type == "llama" and described.startswith("Llama (`llama`): 2 layers, width 128")
    assert "GPTBigCode" not in described


@pytest.mark.slow
def test_the_tiny_llama_twin_runs_end_to_end(tmp_path, cache_dir):
    """CAP -> CAT -> full SFT and LoRA (all-linear) -> eval -> publish on a Llama built from the recipe's config."""
    from safetensors import safe_open

    run = tmp_path / "run"
    result = cli("run", str(LLAMA), "--output-dir", str(run), env={"AURORA_M_CACHE": str(cache_dir)})
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads((LLAMA / "config.json").read_text())
    for stage in ("cap", "cat", "sft", "lora"):
        config = json.loads((run / stage / "model" / "config.json").read_text())
        assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
        for key in ("vocab_size", "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id"):
            assert config[key] == written[key], (stage, key)  # kept as written, not replaced by the tokenizer's
    losses = [e["loss"] for e in json.loads((run / "cap" / "log_history.json").read_text()) if "loss" in e]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < losses[0] - 0.5  # it learns
    adapter = json.loads((run / "lora" / "adapter" / "adapter_config.json").read_text())
    layers = {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]}
    assert layers == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with safe_open(str(run / "lora" / "model" / "model.safetensors"), "pt") as merged:
        assert not [k for k in merged.keys() if "lora" in k]
        with safe_open(str(run / "cat" / "model" / "model.safetensors"), "pt") as cat:
            key = "model.layers.0.mlp.down_proj.weight"
            assert not merged.get_tensor(key).equal(cat.get_tensor(key))  # the adapter was merged in
    for variant in ("base", "redteamed", "safety-sft", "safety-lora"):
        results = json.loads((run / "eval" / f"aurora-m-tiny-llama-{variant}" / "results.json").read_text())
        assert set(results["perplexity"]) >= {"en", "fi", "code"} and results["safety"]
        card = (run / "publish" / f"aurora-m-tiny-llama-{variant}" / "README.md").read_text()
        assert "Llama (`llama`): 2 layers, width 128, 4 heads with grouped-query attention" in card
        assert "- llama" in card and "gpt_bigcode" not in card and "GPTBigCode" not in card
    # publishing from the run folder alone: its copy of the recipe loads (data_roots recorded as read)
    export = tmp_path / "export"
    published = cli("publish", str(run), "--variant", "aurora-m-tiny-llama-safety-lora", "--out", str(export))
    assert published.returncode == 0, published.stderr[-2000:]
    assert (export / "model.safetensors").is_file() and "Llama (`llama`)" in (export / "README.md").read_text()


def test_plan_refuses_a_family_it_cannot_count_in_one_line(capsys):
    assert main(["plan", str(LLAMA), "--gpus", "1", "--gpu", "h100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cap.yaml: base_config: a Llama model (llama): plan counts" in err, err


def _page_section() -> tuple[list[str], list[str]]:
    """The yaml and text blocks of docs/adapting.md's "Your base model" section, in order."""
    import re

    text = (ROOT / "docs" / "adapting.md").read_text(encoding="utf-8").split("## Your base model", 1)[1]
    text = text.split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S), re.findall(r"```text\n(.*?)```", text, flags=re.S)


def test_the_adapting_page_walked_on_a_llama(recipe_copy, capsys):
    """docs/adapting.md, "Your base model": the Llama config copied into the tiny twin, the page's keys pasted
    into cap.yaml and instruct.yaml; each refusal the page shows is the one validate prints, and with the page's
    keys as written the recipe validates."""
    import yaml

    (cap_keys, lora_keys), refusals = _page_section()
    shutil.copy(LLAMA / "config.json", recipe_copy / "config.json")  # step 1
    for name, keys in (("cap.yaml", cap_keys), ("instruct.yaml", lora_keys)):  # steps 1 and 4
        config = yaml.safe_load((recipe_copy / name).read_text(encoding="utf-8"))
        config.update(yaml.safe_load(keys))
        (recipe_copy / name).write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert len(refusals) == 2
    edit_yaml(recipe_copy / "cap.yaml", "config_patches:\n", "config_patches:\n- aurora_m\n")  # step 2
    assert refusals[0].strip() in _refused(recipe_copy, capsys)
    edit_yaml(recipe_copy / "cap.yaml", "config_patches:\n- aurora_m\n", "config_patches:\n")
    edit_yaml(recipe_copy / "config.json", '"eos_token_id": 0', '"eos_token_id": 2')  # step 3
    assert refusals[1].strip() in _refused(recipe_copy, capsys)
    edit_yaml(recipe_copy / "config.json", '"eos_token_id": 2', '"eos_token_id": 0')
    assert main(["validate", str(recipe_copy)]) == 0, capsys.readouterr().err  # step 5


TINY_SHAPES = {  # each family at a few kilobytes: 1 layer, width 32, 4 heads (2 key/value heads where it has them)
    "GPTBigCodeConfig": {"n_layer": 1, "n_embd": 32, "n_head": 4, "n_positions": 64},
    "GPT2Config": {"n_layer": 1, "n_embd": 32, "n_head": 4, "n_positions": 64},
    "LlamaConfig": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2},
    "MistralConfig": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2},
    "Qwen2Config": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2},
    "Starcoder2Config": {
        "num_hidden_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


@pytest.mark.parametrize("name", list(TINY_SHAPES))
def test_each_familys_linear_layers_are_the_models_own(name):
    """The table's LoRA defaults are exactly the linear layers (nn.Linear, GPT-2's Conv1D) a built model of that
    family has, output head aside: what peft's all-linear finds, so the defaults adapt every block."""
    import torch
    import transformers
    from transformers.pytorch_utils import Conv1D

    config = getattr(transformers, name)(vocab_size=128, intermediate_size=64, **TINY_SHAPES[name])
    model = transformers.AutoModelForCausalLM.from_config(config)
    linear = {
        path.rsplit(".", 1)[-1]
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D) and path != "lm_head"
    }
    family = model_facts(config.to_dict()).family
    assert set(family.linear_layers) == linear, (family.model_type, linear)
    if family.learned_positions:  # the matrix the aurora_m patch trims is where the table says
        assert model.get_submodule(family.position_matrix).weight.shape[0] == 64


def test_aurora_m_trims_a_gpt2_too(tmp_path):
    """Learned positions, not GPTBigCode, are what the aurora_m patch needs: a GPT-2 keeps its first rows."""
    import torch
    import transformers

    from aurora_m.patches import apply_model_patches

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, **TINY_SHAPES["GPT2Config"])
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    rows = model.transformer.wpe.weight[:32].detach().clone()
    ids = torch.randint(0, 128, (1, 20))
    with torch.no_grad():
        before = model(ids).logits
        apply_model_patches(model, ["aurora_m:32"])
        after = model(ids).logits
    assert model.config.n_positions == 32 and torch.equal(model.transformer.wpe.weight, rows)
    torch.testing.assert_close(before, after)
