"""The nanotron engine on a CPU (no nanotron installed): conversion both ways at TP=1 and TP=2, a plain-PyTorch
forward over the nanotron-layout tensors against transformers' logits, the emitted configs of the tiny and 15B
recipes against checked-in YAML and against nanotron's config schema at the pinned commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aurora_m.engines.nanotron import INSTALL, PINNED_COMMIT, require_nanotron
from aurora_m.engines.nanotron import schema as nt_schema
from aurora_m.engines.nanotron.checkpoint import EMBED, POSITIONS, block, param_file, shard_files
from aurora_m.engines.nanotron.config import Corpus, Upstream, emit
from aurora_m.engines.nanotron.convert import hf_to_nanotron, nanotron_to_hf, read_param
from aurora_m.engines.nanotron.folders import NanotronDirs
from aurora_m.engines.nanotron.modelconfig import GPTBigCodeConfig
from aurora_m.engines.nanotron.reference import reference_logits
from aurora_m.errors import RecipeError

from conftest import ROOT, TINY, cli

FIXTURES = Path(__file__).parent / "fixtures" / "nanotron"
REAL = ROOT / "recipes" / "aurora-m-15b"
SCHEMA = json.loads((FIXTURES / "schema.json").read_text())
# AURORA_M_REGENERATE=1 rewrites the expected YAML (then review the diff)
REGENERATE = os.environ.get("AURORA_M_REGENERATE") == "1"


# ----------------------------------------------------------------------------- a tiny GPTBigCode
@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> tuple[Path, object]:
    """The tiny twin's shape (StarCoderPlus config through the aurora_m and tiny patches), small vocabulary,
    every weight and bias perturbed so that a misplaced tensor changes the logits."""
    from transformers import AutoModelForCausalLM

    from aurora_m.patches import apply_config_patches, load_base_config

    patches = ["aurora_m", "tiny", "dtype:float32", "attn:eager"]
    config = apply_config_patches(load_base_config("starcoderplus"), patches)
    config.vocab_size = 512
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("tiny") / "hf"
    model.save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text("{}")  # travels with the weights both ways
    return folder, model


def _tensors(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("tp", [1, 2])
def test_hf_to_nanotron_to_hf_is_bitwise_identical(tiny_hf, tmp_path, tp):
    src, _ = tiny_hf
    hf_to_nanotron(src, tmp_path / "nt", tp=tp)
    nanotron_to_hf(tmp_path / "nt", tmp_path / "back")
    before, after = _tensors(src), _tensors(tmp_path / "back")
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    a, b = json.loads((src / "config.json").read_text()), json.loads((tmp_path / "back" / "config.json").read_text())
    for key in (
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "vocab_size",
        "multi_query",
        "activation_function",
        "layer_norm_epsilon",
        "pad_token_id",
        "eos_token_id",
    ):
        assert a[key] == b[key], key
    assert (tmp_path / "back" / "tokenizer_config.json").is_file()


def test_tp2_shards_are_nanotron_slices_that_reassemble(tiny_hf, tmp_path):
    src, model = tiny_hf
    hf_to_nanotron(src, tmp_path / "nt", tp=2)
    state = model.state_dict()
    n_embd = model.config.n_embd
    c_attn = state["transformer.h.1.attn.c_attn.weight"]
    q_name, kv_name = f"{block(1)}.attn.qkv.q.weight", f"{block(1)}.attn.qkv.kv.weight"
    # q: split by heads (rows) over two files; kv: [k; v], one file shared by the ranks
    assert [p.name for p in shard_files(tmp_path / "nt", q_name)] == [
        f"model_weight_pp-rank-0-of-1_tp-rank-{r}-of-2.safetensors" for r in (0, 1)
    ]
    rank1 = load_file(param_file(tmp_path / "nt", q_name, 1, 2))["data"]
    assert torch.equal(rank1, c_attn[n_embd // 2 : n_embd])
    assert shard_files(tmp_path / "nt", kv_name) == [param_file(tmp_path / "nt", kv_name)]
    assert torch.equal(read_param(tmp_path / "nt", kv_name), c_attn[n_embd:])
    assert torch.equal(read_param(tmp_path / "nt", q_name), c_attn[:n_embd])
    # row-parallel projections are cut along their input (columns)
    o_rank0 = load_file(param_file(tmp_path / "nt", f"{block(0)}.attn.o.weight", 0, 2))["data"]
    assert torch.equal(o_rank0, state["transformer.h.0.attn.c_proj.weight"][:, : n_embd // 2])
    assert torch.equal(read_param(tmp_path / "nt", EMBED), state["transformer.wte.weight"])
    assert not any("lm_head" in str(p) for p in (tmp_path / "nt").rglob("*.safetensors"))  # tied: not stored


def test_a_checkpoint_saved_at_pp2_converts_back_the_same(tiny_hf, tmp_path):
    """nanotron at PP=2 names each sharded file by the pipeline stage that held the block (replicated ones carry
    no ranks, as in its save_weights); the export reads whichever stage wrote a parameter."""
    import re

    src, model = tiny_hf
    nt = hf_to_nanotron(src, tmp_path / "nt", tp=2)
    half = model.config.n_layer // 2
    moved = 0
    for path in sorted(nt.rglob("*_pp-rank-0-of-1_*.safetensors")):
        layer = re.search(r"/decoder/(\d+)/", str(path))
        stage = int(layer is not None and int(layer.group(1)) >= half)
        path.rename(path.with_name(path.name.replace("pp-rank-0-of-1", f"pp-rank-{stage}-of-2")))
        moved += stage
    assert moved > 0
    nanotron_to_hf(nt, tmp_path / "back")
    before, after = _tensors(src), _tensors(tmp_path / "back")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("tp,tensor_parallel", [(1, False), (2, False), (2, True)])
def test_reference_forward_gives_transformers_logits(tiny_hf, tmp_path, tp, tensor_parallel):
    src, model = tiny_hf
    hf_to_nanotron(src, tmp_path / "nt", tp=tp)
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(ids).logits
    got = reference_logits(tmp_path / "nt", ids, tensor_parallel=tensor_parallel)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_reference_forward_sees_a_wrong_kv_split(tiny_hf, tmp_path):
    """The comparison above can fail: [v; k] instead of [k; v] gives other logits."""
    from safetensors.torch import save_file

    src, model = tiny_hf
    hf_to_nanotron(src, tmp_path / "nt")
    path = param_file(tmp_path / "nt", f"{block(0)}.attn.qkv.kv.weight")
    kv = load_file(path)["data"]
    save_file({"data": torch.cat(kv.chunk(2)[::-1]).contiguous()}, path)
    ids = torch.arange(16)[None]
    with torch.no_grad():
        expected = model(ids).logits
    assert not torch.allclose(reference_logits(tmp_path / "nt", ids), expected, atol=1e-3)


def test_n_positions_trim_keeps_the_first_rows(tiny_hf, tmp_path):
    from transformers import AutoModelForCausalLM

    src, model = tiny_hf
    hf_to_nanotron(src, tmp_path / "nt", n_positions=64)
    assert torch.equal(read_param(tmp_path / "nt", POSITIONS), model.transformer.wpe.weight[:64])
    nanotron_to_hf(tmp_path / "nt", tmp_path / "back")
    trimmed = AutoModelForCausalLM.from_pretrained(tmp_path / "back", attn_implementation="eager").eval()
    assert trimmed.config.n_positions == 64
    ids = torch.arange(64)[None] % 512
    with torch.no_grad():
        torch.testing.assert_close(trimmed(ids).logits, model(ids).logits)
    with pytest.raises(RecipeError, match="trimmed, not added"):
        hf_to_nanotron(src, tmp_path / "more", n_positions=4096)


def test_conversion_refuses_what_it_must_not_touch(tiny_hf, tmp_path):
    src, _ = tiny_hf
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="not written by aurora-m"):
        hf_to_nanotron(src, foreign)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    hf_to_nanotron(src, tmp_path / "nt")
    with pytest.raises(RecipeError, match="--overwrite"):
        hf_to_nanotron(src, tmp_path / "nt")
    hf_to_nanotron(src, tmp_path / "nt", overwrite=True, tp=2)  # ours: replaced in one rename
    assert len(shard_files(tmp_path / "nt", EMBED)) == 2
    with pytest.raises(RecipeError, match="must divide"):
        hf_to_nanotron(src, tmp_path / "tp3", tp=3)
    with pytest.raises(RecipeError, match="config.json"):
        hf_to_nanotron(tmp_path / "nt", tmp_path / "x")  # a nanotron folder is not a transformers one
    with pytest.raises(RecipeError, match="model_config.json"):
        nanotron_to_hf(src, tmp_path / "y")
    assert not (tmp_path / "tp3").exists() and not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_convert_both_ways(tiny_hf, tmp_path):
    src, _ = tiny_hf
    done = cli("convert", "hf-to-nanotron", str(src), str(tmp_path / "nt"), "--tp", "2")
    assert done.returncode == 0, done.stderr
    done = cli("convert", "nanotron-to-hf", str(tmp_path / "nt"), str(tmp_path / "back"))
    assert done.returncode == 0, done.stderr
    assert torch.equal(_tensors(src)["transformer.wte.weight"], _tensors(tmp_path / "back")["transformer.wte.weight"])
    done = cli("convert", "nanotron-to-hf", str(tmp_path / "nt"), str(tmp_path / "back"))
    assert done.returncode == 2 and "--overwrite" in done.stderr and "Traceback" not in done.stderr


def test_convert_checks_the_config_against_the_tensors(tiny_hf, tmp_path, capsys):
    import shutil

    from aurora_m.cli import main

    src = shutil.copytree(tiny_hf[0], tmp_path / "hf")
    config = json.loads((src / "config.json").read_text())
    for key, value, words in (("n_layer", 1, "1 layers, but the weights hold 2"), ("n_inner", 64, "mlp.c_fc")):
        (src / "config.json").write_text(json.dumps({**config, key: value}))
        assert main(["convert", "hf-to-nanotron", str(src), str(tmp_path / "nt")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
        assert not (tmp_path / "nt").exists()


# ----------------------------------------------------------------------------- config emission
def _parse(stage_yaml: Path, overrides: list[str], engine: str = "nanotron"):
    from aurora_m.stage_checks import parse_stage

    return parse_stage(
        stage_yaml,
        "pretrain",
        ["--output_dir", "/tmp/unused", *overrides],
        validate_only=True,
        has_model_input="cat" in stage_yaml.name,
        engine=engine,
    )


def _model_config(model_args, vocab: int) -> GPTBigCodeConfig:
    """From the bundled StarCoderPlus config.json and the recipe's patches (no transformers defaults involved)."""
    from aurora_m.patches import TINY_SHAPE

    hf = json.loads((ROOT / "aurora_m" / "configs" / "starcoderplus.json").read_text())
    if "tiny" in model_args.config_patches:
        hf.update(TINY_SHAPE)
    hf.update(n_positions=2048, pad_token_id=0, vocab_size=vocab)
    return GPTBigCodeConfig.from_hf(hf)


def _corpus(stage_yaml: Path, run: Path, stage: str, vocab: int) -> Corpus:
    """A data step's mixture summary for the recipe's sources: non-replay weights share what replay leaves."""
    raw = yaml.safe_load(stage_yaml.read_text())
    replay = [s for s in raw["mixture"] if s.get("replay")]
    rest = [s for s in raw["mixture"] if not s.get("replay")]
    share = float(raw.get("replay_share", 0.0))
    total = sum(s.get("weight", 1.0) for s in rest)
    sources = [
        {"name": s["name"], "windows": 1, "realised_share": (1 - share) * s.get("weight", 1.0) / total} for s in rest
    ] + [{"name": s["name"], "windows": 1, "realised_share": share / len(replay)} for s in replay]
    mixture = {"sources": sources, "tokenizer_vocab": vocab, "token_size": 2}
    data = run / stage / "data"
    return Corpus.from_mixture(mixture, lambda name: data / "tokens" / name, str(data / "tokenizer"))


CASES = {  # name: (recipe folder, overrides, launch GPUs, vocabulary)
    "tiny": (TINY, [], 1, 4096),
    "tiny-tp2": (TINY, ["--tp", "2"], 2, 4096),
    "15b": (REAL, ["--tp", "4", "--pp", "4", "--gradient_accumulation_steps", "64"], 128, 49152),
}


def emitted(case: str) -> dict[str, dict]:
    folder, overrides, world, vocab = CASES[case]
    run = Path(f"/runs/{folder.name}")
    out = {}
    upstream = None
    for stage in ("cap", "cat"):
        model_args, mix_args, training_args, parallel = _parse(folder / f"{stage}.yaml", overrides)
        ckpts = run / stage / "nanotron"
        init = run / stage / "nanotron-init"
        if model_args.init_from == "full_state":
            init = upstream.checkpoints / str(upstream.step)
        out[stage] = emit(
            model_args,
            mix_args,
            training_args,
            parallel,
            project=folder.name,
            stage=stage,
            model_config=_model_config(model_args, vocab),
            init=init,
            checkpoints=ckpts,
            corpus=_corpus(folder / f"{stage}.yaml", run, stage, vocab),
            world_size=world,
            upstream=upstream if model_args.init_from == "full_state" else None,
            config_file=folder / f"{stage}.yaml",
        )
        upstream = Upstream(stage, ckpts, out[stage]["tokens"]["train_steps"])
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_emitted_configs_match_the_checked_in_yaml(case):
    for stage, config in emitted(case).items():
        expected = FIXTURES / f"{case}-{stage}.yaml"
        text = yaml.safe_dump(config, sort_keys=False)
        if REGENERATE:
            expected.write_text(text)
        assert text == expected.read_text(), f"{expected.name}: emitted config changed (AURORA_M_REGENERATE=1)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_emitted_key_is_in_nanotrons_schema(case):
    for stage, config in emitted(case).items():
        assert nt_schema.check(config, SCHEMA) == [], (case, stage)


def test_emission_carries_the_budget_and_the_hand_off():
    real = emitted("15b")
    cap, cat = real["cap"], real["cat"]
    # the paper: 90k steps of 2048 x 2048 tokens on TP4 x PP4 x DP8 = 128 GPUs
    assert cap["parallelism"] | {} == {**cap["parallelism"], "tp": 4, "pp": 4, "dp": 8}
    assert cap["tokens"]["train_steps"] == 90_000 and cap["tokens"]["batch_accumulation_per_replica"] == 64
    assert cap["model"]["model_config"]["max_position_embeddings"] == 2048  # the Aurora-M trim
    assert cap["checkpoints"]["resume_checkpoint_path"] == cap["checkpoints"]["checkpoints_path"]
    assert cap["model"]["init_method"]["path"].endswith("cap/nanotron-init")
    sched = cap["optimizer"]["learning_rate_scheduler"]
    assert (sched["lr_warmup_steps"], sched["lr_decay_style"], sched["lr_decay_steps"], sched["min_decay_lr"]) == (
        2000,
        "cosine",
        88_000,
        3e-5,
    )
    # CAT (full_state): CAP's last checkpoint resumed, CAP listed first, CAT's stage from step 90,001 on
    assert cat["checkpoints"]["resume_checkpoint_path"] == cap["checkpoints"]["checkpoints_path"]
    assert [(s["name"], s["start_training_step"]) for s in cat["data_stages"]] == [("cap", 1), ("cat", 90_001)]
    # CAT's budget, 58,300,825,600 tokens, is 13,900 steps of 4 x 64 x 8 sequences of 2048: the released "step 103.9k"
    assert cat["tokens"]["train_steps"] == 90_000 + 58_300_825_600 // (4 * 64 * 8 * 2048) == 103_900
    assert cat["optimizer"]["learning_rate_scheduler"]["min_decay_lr"] == 3e-5  # constant at CAT's rate
    assert sum(cap["data_stages"][0]["data"]["dataset"]["dataset_weights"]) == pytest.approx(1.0, abs=1e-5)


def test_the_15b_emission_against_values_derived_by_hand_from_the_recipe_and_the_paper():
    """The checked-in YAML was written by the code it checks; these values are derived here from the recipe's
    own keys and the paper's figures (StarCoderPlus: 15.5B parameters, 40 layers, 6144 wide, 48 heads, MQA,
    8192 positions, a 49,152-token vocabulary; Aurora-M: 377B tokens in 90k steps of 2048 x 2048)."""
    recipe = yaml.safe_load((REAL / "cap.yaml").read_text())
    cap = emitted("15b")["cap"]
    world, tp, pp, accumulation = 128, 4, 4, 64  # CASES["15b"]: the launch and its overrides
    dp = world // (tp * pp)
    micro, seq = recipe["per_device_train_batch_size"], recipe["seq_length"]
    steps = recipe["train_tokens"] // (dp * micro * accumulation * seq)
    assert (dp, steps, dp * micro * accumulation) == (8, 90_000, 2048)  # the paper's 2048 sequences a step
    assert (cap["parallelism"]["tp"], cap["parallelism"]["pp"], cap["parallelism"]["dp"]) == (tp, pp, dp)
    assert cap["tokens"] == {
        **cap["tokens"],
        "sequence_length": 2048,
        "train_steps": steps,
        "micro_batch_size": micro,
        "batch_accumulation_per_replica": accumulation,
    }
    optimizer = cap["optimizer"]
    factory, schedule = optimizer["optimizer_factory"], optimizer["learning_rate_scheduler"]
    assert (factory["adam_beta1"], factory["adam_beta2"]) == (recipe["adam_beta1"], recipe["adam_beta2"])
    assert (optimizer["weight_decay"], optimizer["clip_grad"]) == (recipe["weight_decay"], recipe["max_grad_norm"])
    assert schedule["learning_rate"] == recipe["learning_rate"] == 3e-4
    assert schedule["lr_warmup_steps"] == recipe["warmup_steps"]
    assert schedule["lr_decay_steps"] == steps - recipe["warmup_steps"]  # cosine over what follows warmup
    assert schedule["min_decay_lr"] == recipe["lr_scheduler_kwargs"]["min_lr"]
    assert cap["checkpoints"]["checkpoint_interval"] == recipe["save_steps"]
    assert cap["general"]["seed"] == recipe["seed"] and cap["model"]["dtype"] == "bfloat16"  # the dtype patch
    # the model: StarCoderPlus's shape, positions trimmed to 2048 by the aurora_m patch
    m = cap["model"]["model_config"]
    assert (m["num_hidden_layers"], m["hidden_size"], m["num_attention_heads"]) == (40, 6144, 48)
    assert (m["vocab_size"], m["max_position_embeddings"], m["multi_query"]) == (49152, 2048, True)
    h, ff, head = m["hidden_size"], m["intermediate_size"], m["hidden_size"] // m["num_attention_heads"]
    per_layer = 2 * 2 * h + (h + 1) * (h + 2 * head) + (h + 1) * h + (h + 1) * ff + (ff + 1) * h  # MQA: 1 k/v head
    parameters = m["vocab_size"] * h + 8192 * h + m["num_hidden_layers"] * per_layer + 2 * h
    assert parameters == pytest.approx(15.5e9, rel=0.01)  # with StarCoderPlus's 8192 positions: the paper's size
    with torch.device("meta"):  # and transformers builds the same count from the emitted shape
        from transformers import GPTBigCodeConfig as HFConfig
        from transformers import GPTBigCodeForCausalLM

        hf = HFConfig(
            vocab_size=m["vocab_size"],
            n_positions=8192,
            n_embd=h,
            n_layer=m["num_hidden_layers"],
            n_head=m["num_attention_heads"],
            n_inner=ff,
            multi_query=True,
        )
        assert sum(p.numel() for p in GPTBigCodeForCausalLM(hf).parameters()) == parameters


def test_emission_refuses_what_nanotron_cannot_run():
    model_args, mix_args, training_args, parallel = _parse(REAL / "cap.yaml", ["--tp", "4", "--pp", "4"])
    args = {
        "project": "p",
        "stage": "cap",
        "model_config": _model_config(model_args, 49152),
        "init": Path("/i"),
        "checkpoints": Path("/c"),
        "corpus": _corpus(REAL / "cap.yaml", Path("/r"), "cap", 49152),
    }
    with pytest.raises(RecipeError, match="dp: tp 4 x pp 4 x dp 2 = 32 GPUs, but the launch has 128"):
        parallel.dp = 2
        emit(model_args, mix_args, training_args, parallel, world_size=128, **args)
    parallel.dp = None
    with pytest.raises(RecipeError, match="does not divide the launch's 24 GPUs"):
        emit(model_args, mix_args, training_args, parallel, world_size=24, **args)
    with pytest.raises(RecipeError, match="max_steps: 5 disagrees with the token budget"):
        training_args.max_steps = 5
        emit(model_args, mix_args, training_args, parallel, world_size=128, **args)
    training_args.max_steps = -1
    training_args.lr_scheduler_type = "polynomial"
    with pytest.raises(RecipeError, match="lr_scheduler_type: 'polynomial' has no nanotron equivalent"):
        emit(model_args, mix_args, training_args, parallel, world_size=128, **args)


def test_the_schema_check_catches_a_key_nanotron_does_not_have():
    config = emitted("tiny")["cap"]
    config["tokens"]["sequence_lenght"] = 128
    config["optimizer"]["optimizer_factory"].pop("adam_eps")
    config["data_stages"][0]["data"]["dataset"]["dataset_folders"] = []
    config["model"]["model_config"]["n_embd"] = 128
    problems = nt_schema.check(config, SCHEMA)
    assert "Config.tokens.sequence_lenght: not a field" in problems
    assert "Config.model.model_config.n_embd: not a field" in problems
    assert any("optimizer_factory" in p for p in problems) and any("dataset" in p for p in problems)


def test_schema_fixture_is_the_pinned_commits_and_the_generator_reads_dataclasses(tmp_path):
    assert SCHEMA["nanotron_commit"] == PINNED_COMMIT
    assert {"general", "parallelism", "model", "tokens", "optimizer", "data_stages", "checkpoints"} <= set(
        SCHEMA["dataclasses"]["Config"]["fields"]
    )
    (tmp_path / "a.py").write_text(
        "from dataclasses import dataclass\nfrom typing import Optional, Union\n"
        "@dataclass\nclass Base:\n    x: int\n    y: Optional[str] = None\n"
        "@dataclass\nclass Child(Base):\n    z: 'Base' = None\n"
        "class NotADataclass:\n    w: int\n"
        "Either = Union[Base, Child]\n"
    )
    made = nt_schema.generate(tmp_path, "abc")
    assert made["dataclasses"]["Child"]["fields"] == {
        "x": {"type": "int", "required": True},
        "y": {"type": "Optional[str]", "required": False},
        "z": {"type": "'Base'", "required": False},
    }
    assert "NotADataclass" not in made["dataclasses"] and made["aliases"] == {"Either": "Union[Base, Child]"}


# ----------------------------------------------------------------------------- engine wiring without nanotron
@pytest.mark.skipif(__import__("importlib").util.find_spec("nanotron") is not None, reason="nanotron is installed")
def test_without_nanotron_the_engine_names_its_install_steps(tmp_path):
    with pytest.raises(RecipeError, match="git checkout 2411b022a75f"):
        require_nanotron()
    assert PINNED_COMMIT in INSTALL
    done = cli("validate", str(TINY / "nanotron"))
    assert done.returncode == 2 and "engine 'nanotron' is not installed" in done.stderr, done.stderr
    train = cli("train", str(TINY / "nanotron"), "--output-dir", str(tmp_path / "run"), "--stage", "cap")
    assert train.returncode == 2 and "engine 'nanotron' is not installed" in train.stderr, train.stderr
    assert not (tmp_path / "run" / "cap").exists()  # refused before anything was built
    import subprocess
    import sys

    check = subprocess.run(
        [sys.executable, "-m", "aurora_m.engines.nanotron.entry", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # what recipes/launch.slurm runs first
    assert check.returncode == 2 and "Traceback" not in check.stderr, check.stderr
    assert (
        check.stderr.strip()
        .splitlines()[-1]
        .startswith("aurora-m nanotron: error: engine: nanotron is not importable")
    ), check.stderr


def test_a_nanotron_that_does_not_import_is_refused_before_any_step(tmp_path):
    """PyPI's nanotron 0.4, or a node without flash-attn or grouped_gemm: found, but its trainer does not import."""
    fake = tmp_path / "site" / "nanotron"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('cannot import name Config (circular import)')\n")
    # the fake first, then whatever the caller's PYTHONPATH already holds (a checkout under test)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")])),
    }
    done = cli("train", str(TINY / "nanotron"), "--output-dir", str(tmp_path / "run"), "--stage", "cap", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "nanotron is not importable here (cannot import name Config" in done.stderr
    assert "git checkout 2411b022a75f" in done.stderr and not (tmp_path / "run" / "cap").exists()
    data = cli("data", str(TINY / "nanotron"), "--output-dir", str(tmp_path / "run"), "--stage", "cap", env=env)
    assert data.returncode == 0, data.stderr  # the data step does not need the engine


def test_the_data_step_of_a_nanotron_stage_runs_without_nanotron_and_feeds_every_step(tmp_path):
    """Data on a CPU node (the project's usual environment), training in the nanotron one: the data step does not
    need the engine, and its stream holds exactly the stage's optimizer steps of nanotron micro batches."""
    from aurora_m.data.stream import open_stream
    from aurora_m.engines.nanotron.batches import Shape, StageBatches
    from aurora_m.layout import DatasetDir

    done = cli("data", str(TINY / "nanotron"), "--output-dir", str(tmp_path / "run"), "--stage", "cap")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"cap/data": "completed"}
    data = DatasetDir(tmp_path / "run" / "cap" / "data")
    batches = StageBatches(open_stream(data), Shape(8, 1, 1), 0, folders={})
    assert batches.steps == 240 == emitted("tiny")["cap"]["tokens"]["train_steps"]
    assert batches[239]["input_ids"].shape == (8, 128)


def test_the_loss_record_of_relaunches_gives_one_history_and_plot(tmp_path):
    """A killed launch logged steps 1-5 after its checkpoint at 3 (and a line cut short); the relaunch logs 4-6
    again: the history holds each step once, its last record, as the transformers engine's log_history."""
    from aurora_m.engines.nanotron.runner import loss_history, write_loss_history
    from aurora_m.layout import StageDir

    dirs = StageDir(tmp_path / "cap")
    dirs.root.mkdir()
    lines = [json.dumps({"step": s, "loss": 9.0 - s, "learning_rate": 1e-3}) for s in range(1, 6)]
    lines += ['{"step": 6, "lo', *(json.dumps({"step": s, "loss": 8.5 - s, "learning_rate": 1e-3}) for s in (4, 5, 6))]
    lines += ['{"step": Infinity, "loss": 1.0}', "[1, 2]", "null"]
    NanotronDirs(dirs).losses.write_bytes(("\n".join(lines) + "\n").encode() + b'{"step": 7, "loss": \xff\xfe\n')
    history = loss_history(NanotronDirs(dirs).losses)
    assert [e["step"] for e in history] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in history] == [8.0, 7.0, 6.0, 4.5, 3.5, 2.5]
    write_loss_history(dirs, "tiny cap")
    assert json.loads(dirs.log_history.read_text()) == history and dirs.loss_png.read_bytes()[:4] == b"\x89PNG"
    assert loss_history(tmp_path / "none.jsonl") == []


def test_the_launch_shape_comes_from_the_environment_and_bad_values_name_their_variable():
    from aurora_m.engines.nanotron.launch import Nodes, nodes_from_env

    assert nodes_from_env({}, gpus_here=8) == Nodes(1, 8, "localhost:29500", "aurora-m", 0)
    slurm = {
        "SLURM_JOB_ID": "77",
        "SLURM_NNODES": "16",
        "MASTER_ADDR": "gpu-a",
        "MASTER_PORT": "29600",
        "MAX_RESTARTS": "3",
    }
    nodes = nodes_from_env(slurm, gpus_here=8)
    assert nodes == Nodes(16, 8, "gpu-a:29600", "77", 3) and nodes.world_size == 128  # the paper's 128 GPUs
    one_node = {**slurm, "AURORA_M_NNODES": "1", "AURORA_M_NPROC_PER_NODE": "2"}
    assert nodes_from_env(one_node, gpus_here=8).world_size == 2
    assert nodes_from_env({"SLURM_NNODES": "4"}, gpus_here=8).nnodes == 1  # not inside a job: a leftover variable
    for env, name in (
        ({"AURORA_M_NNODES": "two"}, "AURORA_M_NNODES"),
        ({"AURORA_M_NNODES": "0"}, "AURORA_M_NNODES"),
        ({"SLURM_JOB_ID": "1", "SLURM_NNODES": "x"}, "SLURM_NNODES"),
        ({"MASTER_PORT": "-1"}, "MASTER_PORT"),
    ):
        with pytest.raises(RecipeError, match=f"{name}: expected a whole number"):
            nodes_from_env(env, gpus_here=8)
    with pytest.raises(RecipeError, match="nanotron needs GPUs"):
        nodes_from_env({}, gpus_here=0)


def test_one_node_runs_torchrun_and_several_run_it_once_per_node_through_srun(tmp_path, monkeypatch):
    from aurora_m.engines.nanotron.launch import Nodes, launch_command

    one = launch_command(Path("c.yaml"), Path("data"), Nodes(1, 8), tmp_path)
    assert one[1:4] == ["-m", "torch.distributed.run", "--nnodes=1"] and "--standalone" in one
    assert one[-6:] == ["-m", "aurora_m.engines.nanotron.entry", "--config-file", "c.yaml", "--data", "data"]
    logged = launch_command(Path("c.yaml"), Path("data"), Nodes(1, 8), tmp_path, loss_log=Path("l.jsonl"))
    assert logged[-2:] == ["--loss-log", "l.jsonl"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(RecipeError, match="16 nodes are launched with srun"):
        launch_command(Path("c.yaml"), Path("data"), Nodes(16, 8, "gpu-a:29500", "77"), tmp_path)
    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    many = launch_command(Path("c.yaml"), Path("data"), Nodes(16, 8, "gpu-a:29500", "77", 2), tmp_path / "logs")
    assert many[:7] == [
        "srun",
        "--nodes=16",
        "--ntasks=16",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--open-mode=append",
        f"--output={tmp_path / 'logs'}/train-%j-node%n.log",
    ]
    for part in (
        "--nnodes=16",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu-a:29500",
        "--rdzv_id=77",
        "--max_restarts=2",
    ):
        assert part in many, part
    assert not any(a.startswith("--node_rank") for a in many)  # the same command on every node


FAKE_SRUN = """#!/bin/bash
# srun inside a job: the command once per task, in parallel, each task's output in --output (%j, %n expanded)
ntasks=1 output=""
while [ $# -gt 0 ]; do
    case "$1" in --ntasks=*) ntasks=${1#--ntasks=} ;; --output=*) output=${1#--output=} ;; --*) ;; *) break ;; esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    out=${output//%j/$SLURM_JOB_ID}; out=${out//%n/$i}
    "$@" >>"$out" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def test_the_multi_node_launch_meets_at_one_rendezvous_with_every_rank_once(tmp_path, monkeypatch):
    """The srun command run for real (2 'nodes' of 2 processes on this host; no process group, only torchrun's c10d
    rendezvous), with the entry point swapped for a module that reports each worker's rank."""
    import socket
    import subprocess

    from aurora_m.engines.nanotron.launch import Nodes, launch_command

    (tmp_path / "srun").write_text(FAKE_SRUN)
    (tmp_path / "srun").chmod(0o755)
    (tmp_path / "report_rank.py").write_text(
        "import json, os, sys\nprint(json.dumps({k: os.environ[k] for k in "
        "('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'GROUP_RANK')}), file=sys.stderr)\n"
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    logs = tmp_path / "logs"
    logs.mkdir()
    command = launch_command(Path("c.yaml"), Path("data"), Nodes(2, 2, f"127.0.0.1:{port}", "4242"), logs)
    entry = command.index("aurora_m.engines.nanotron.entry")
    command[entry:] = ["report_rank"]
    done = subprocess.run(
        command, cwd=tmp_path, env={**os.environ, "SLURM_JOB_ID": "4242", "PYTHONPATH": str(tmp_path)}, timeout=300
    )
    texts = [(logs / f"train-4242-node{n}.log").read_text() for n in (0, 1)]
    assert done.returncode == 0, texts
    ranks = [json.loads(line) for text in texts for line in text.splitlines() if line.startswith("{")]
    assert sorted(int(r["RANK"]) for r in ranks) == [0, 1, 2, 3], texts
    assert {r["WORLD_SIZE"] for r in ranks} == {"4"} and {r["GROUP_RANK"] for r in ranks} == {"0", "1"}


def test_a_nanotron_launch_is_refused_for_a_stage_that_does_not_train_on_nanotron():
    from aurora_m.engines.nanotron.entry import check_stage_engine

    check_stage_engine(str(TINY / "nanotron"), "cat")
    with pytest.raises(RecipeError, match=r"stage 'sft' runs on transformers, not nanotron \(nanotron stages: cap"):
        check_stage_engine(str(TINY / "nanotron"), "sft")
    with pytest.raises(RecipeError, match="no stage named 'capp'"):
        check_stage_engine(str(TINY / "nanotron"), "capp")
    with pytest.raises(RecipeError, match="nanotron stages: none"):
        check_stage_engine(str(TINY), "cap")  # the transformers pipeline


def test_the_transformers_engine_refuses_parallelism_keys():
    with pytest.raises(RecipeError, match="--tp: a key of the nanotron engine: set engine: nanotron"):
        _parse(TINY / "cap.yaml", ["--tp", "2"], engine="transformers")
    assert _parse(TINY / "cap.yaml", ["--tp", "2"])[-1].tp == 2  # the nanotron engine's own key


def test_the_nanotron_recipes_use_the_same_stage_yamls():
    from aurora_m.recipe import load_recipe

    for folder in (TINY, REAL):
        plain, nano = load_recipe(folder), load_recipe(folder / "nanotron")
        assert [(s.name, s.config) for s in plain.stages] == [(s.name, s.config) for s in nano.stages]
        assert {s.name: s.engine for s in nano.stages if s.kind == "pretrain"} == {
            "cap": "nanotron",
            "cat": "nanotron",
        }


def test_only_the_engine_package_imports_nanotron_and_only_inside_functions():
    import ast

    offenders = []
    for path in sorted((ROOT / "aurora_m").rglob("*.py")):
        tree = ast.parse(path.read_text())
        functions = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(n == "nanotron" or n.startswith("nanotron.") for n in names):
                inside = path.parent == ROOT / "aurora_m" / "engines" / "nanotron"
                if not inside or id(node) not in functions:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_conversion_never_destroys_its_source_or_the_users_files(tiny_hf, tmp_path):
    src, _ = tiny_hf
    out = hf_to_nanotron(src, tmp_path / "nt")
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RecipeError, match="keep.txt"):
        hf_to_nanotron(src, out, overwrite=True)  # ours, but the user added a file: never replaced away
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    for dst in (out, out / "hf"):  # the output would replace (or sit inside) what is being converted
        with pytest.raises(RecipeError, match="overlaps the source"):
            nanotron_to_hf(out, dst, overwrite=True)
    assert shard_files(out, EMBED)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    weights = bad / "model.safetensors"
    weights.write_bytes(b"\0" * 16 + weights.read_bytes()[16:])  # a damaged header
    with pytest.raises(RecipeError, match="model.safetensors: not a readable safetensors file"):
        hf_to_nanotron(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".aurora-m-run.json").write_text("{}")
    inside = cli("convert", "hf-to-nanotron", str(src), str(run / "cap" / "nt"))
    assert inside.returncode == 2 and "inside the run folder" in inside.stderr and not (run / "cap").exists()


@pytest.mark.parametrize(
    "key,value,words",
    [("n_layer", 1, "1 layers, but the checkpoint holds more"), ("n_inner", 64, "mlp.c_fc.weight")],
)
def test_nanotron_to_hf_checks_the_config_against_the_checkpoint(tiny_hf, tmp_path, capsys, key, value, words):
    """A model_config.json that is not the checkpoint's (a layer fewer, another width) would make a folder that
    drops layers or does not load: refused in one line, nothing written."""
    from aurora_m.cli import main
    from aurora_m.engines.nanotron.checkpoint import MODEL_CONFIG
    from aurora_m.engines.nanotron.modelconfig import HF_KEYS

    hf_to_nanotron(tiny_hf[0], tmp_path / "nt")
    config_file = tmp_path / "nt" / MODEL_CONFIG
    config = json.loads(config_file.read_text())
    ours = HF_KEYS[key]
    config_file.write_text(json.dumps({**config, ours: value}))
    capsys.readouterr()  # the first conversion's progress bar
    assert main(["convert", "nanotron-to-hf", str(tmp_path / "nt"), str(tmp_path / "back")]) == 2
    err = capsys.readouterr().err
    assert words in err and "the config is not this checkpoint's" in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1 and not (tmp_path / "back").exists()
