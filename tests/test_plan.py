"""`aurora-m plan` checked against measurement, not against itself: FLOPs against torch's FlopCounterMode on
real forward+backward passes, parameter/gradient/optimizer bytes against the objects after a real AdamW step,
activation memory against the tensors autograd saves (saved-tensor hooks); and its one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from aurora_m.cli import main
from aurora_m.patches import apply_config_patches, load_base_config
from aurora_m.plan.activations import cpu_setting, saved_bytes
from aurora_m.plan.flops import training_flops_per_token
from aurora_m.plan.memory import Launch, memory_per_rank
from aurora_m.plan.shape import shape_from_config

from conftest import TINY

# (n_layer, n_embd, n_head, n_inner, vocab, seq_length, micro-batch): small, unlike shapes
SHAPES = [(2, 64, 4, 256, 512, 32, 2), (3, 96, 6, 384, 1000, 64, 1), (2, 128, 2, 200, 300, 48, 3)]


def build(shape, attn="eager", dropout=0.0, dtype=torch.float32):
    n_layer, n_embd, n_head, n_inner, vocab = shape[:5]
    config = dict(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_inner=n_inner,
        vocab_size=vocab,
        n_positions=128,
        multi_query=True,
        bos_token_id=0,
        eos_token_id=0,
        attn_pdrop=dropout,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
    )
    model_config = GPTBigCodeConfig(**config)
    model_config._attn_implementation = attn
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(model_config).to(dtype)
    model.train()
    return model, shape_from_config(config, param_bytes=2 if dtype == torch.bfloat16 else 4, attn=attn)


@pytest.mark.parametrize("shape", SHAPES)
def test_flops_per_step_match_torch_flop_counter(shape):
    model, planned = build(shape)  # eager attention: its matmuls are counted (CPU SDPA has no FLOP formula)
    seq, batch = shape[5], shape[6]
    ids = torch.randint(0, shape[4], (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    measured = counter.get_total_flops()
    assert measured > 0
    assert abs(training_flops_per_token(planned, seq) * seq * batch / measured - 1) < 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_gradients_and_optimizer_bytes_match_the_objects_after_a_step(dtype):
    model, planned = build(SHAPES[0], dtype=dtype)
    ids = torch.randint(0, SHAPES[0][4], (2, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    states = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    memory = memory_per_rank(planned, Launch("ddp", "ddp"), 1, 32, 2, cpu_setting(planned, 4, False))
    assert sum(p.numel() for p in model.parameters()) == planned.params()
    assert memory.weights == weights and memory.gradients == grads
    assert abs(memory.optimizer / states - 1) < 0.15  # + one step counter per tensor, not modelled
    assert planned.buffer_bytes() == buffers


def saved_during_forward(model, ids) -> int:
    """Bytes of the distinct storages autograd saves for backward, parameters left out."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize(
    "attn,dropout,dtype",
    [
        ("sdpa", 0.0, torch.float32),
        ("sdpa", 0.1, torch.bfloat16),
        ("eager", 0.1, torch.float32),
        ("eager", 0.0, torch.bfloat16),
    ],
)
@pytest.mark.parametrize("shape", SHAPES[:2])
def test_activation_memory_matches_what_autograd_saves(shape, attn, dropout, dtype, checkpointing):
    model, planned = build(shape, attn, dropout, dtype)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    seq, batch = shape[5], shape[6]
    measured = saved_during_forward(model, torch.randint(0, shape[4], (batch, seq)))
    act_bytes = 2 if dtype == torch.bfloat16 else 4
    predicted = saved_bytes(planned, seq, batch, cpu_setting(planned, act_bytes, checkpointing))
    assert abs(predicted / measured - 1) < 0.15, (predicted, measured)


def plan(*args, capsys) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


CPU_ONE = ["--gpus", "1", "--gpu", "cpu", "--gpu-memory", "24", "--peak-tflops", "0.5"]


def test_the_tiny_recipe_on_a_cpu_cluster_of_one(tmp_path, capsys):
    out_json = tmp_path / "plan.json"
    code, out, _ = plan(str(TINY), *CPU_ONE, "--json", str(out_json), capsys=capsys)
    assert code == 0 and "assumptions:" in out
    stages = {s["name"]: s for s in json.loads(out_json.read_text())["stages"]}
    cap = stages["cap"]
    assert (cap["tokens"], cap["steps"], cap["global_batch"]) == (245760, 240, 8)  # the YAML's own arithmetic
    assert {x["name"] for x in cap["launches"]} >= {"ddp", "zero3", "fsdp2"}
    assert all(x["fits"] and x["memory_gib_per_rank"] > 0 for x in cap["launches"])
    # the FLOPs of one of its steps, measured on the model the recipe builds (its config and patches)
    config = apply_config_patches(load_base_config("starcoderplus"), ["aurora_m", "tiny", "attn:eager"])
    config.vocab_size = 4096
    model = GPTBigCodeForCausalLM(config)
    ids = torch.randint(0, 4096, (8, 128))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    assert abs(cap["flops_per_step"] / counter.get_total_flops() - 1) < 0.05
    assert cap["days"] == pytest.approx(240 * cap["flops_per_step"] / (0.5e12 * stages_mfu(out_json)) / 86400)


def stages_mfu(path) -> float:
    return json.loads(path.read_text())["cluster"]["mfu"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--gpus", "8", "--gpu", "tpu-v9"], "--gpu: unknown GPU kind 'tpu-v9' (known: h100,"),
        (["--gpus", "8", "--gpu", "h100", "--mfu", "0"], "--mfu: expected a fraction in (0, 1], got 0.0"),
        (["--gpus", "8", "--gpu", "h100", "--mfu", "1.5"], "--mfu: expected a fraction in (0, 1], got 1.5"),
        (["--gpus", "3", "--gpu", "h100"], "the global batch of 8 sequences cannot be split over 3"),
        (["--gpus", "8", "--gpu-memory", "nan", "--peak-tflops", "1"], "--gpu-memory and --peak-tflops must be"),
        (["--gpus", "8", "--gpu-memory", "80", "--peak-tflops", "inf"], "--gpu-memory and --peak-tflops must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, capsys):
    code, out, err = plan(str(TINY), *args, capsys=capsys)
    assert code == 2 and out == ""
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_sft_stage_on_many_gpus_trains_at_least_a_step_per_epoch(tmp_path, capsys):
    """Its tokens over the global batch is under one step on 8 GPUs: the trainer still takes a step per epoch."""
    out_json = tmp_path / "plan.json"
    assert plan(str(TINY), "--gpus", "8", "--gpu", "h100", "--json", str(out_json), capsys=capsys)[0] == 0
    stages = {s["name"]: s for s in json.loads(out_json.read_text())["stages"]}
    for name in ("sft", "instruct"):
        epochs = yaml.safe_load((TINY / f"{name}.yaml").read_text()).get("num_train_epochs", 3)
        assert stages[name]["steps"] >= epochs >= 1, (name, stages[name]["steps"])


def test_a_json_target_that_is_a_folder_and_a_malformed_rehearsal_are_one_line(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's")
    code, out, err = plan(str(TINY), "--gpus", "1", "--gpu", "h100", "--json", str(folder), capsys=capsys)
    assert code == 2 and f"--json: {folder} exists and is not a regular file" in err and "Traceback" not in err
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    # a file of the user's (a recipe YAML, a device) is never replaced; a plan written before is
    for target in (folder / "keep.txt", Path(os.devnull), folder / "keep.txt" / "x.json"):
        code, out, err = plan(str(TINY), "--gpus", "1", "--gpu", "h100", "--json", str(target), capsys=capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert (folder / "keep.txt").read_text() == "the user's" and Path(os.devnull).is_char_device()
    ours = tmp_path / "plan.json"
    for _ in range(2):
        assert plan(str(TINY), "--gpus", "1", "--gpu", "h100", "--json", str(ours), capsys=capsys)[0] == 0
    for report, words in [
        ([1, 2], "expected a JSON object"),
        ({"sources": "x"}, "sources: expected a list of objects"),
        ({"sources": [{"kept_after": 7}]}, "sources[0].kept_after: expected a mapping"),
        ({"sources": [{"kept_after": {"a": 10, "b": 1000}}]}, "cannot keep more documents than reached it"),
        ({"sources": [{"bytes_per_token": -3}]}, "sources[0].bytes_per_token: expected a number >= 0, got -3"),
        ({"full_size": {"sources": [{"bytes_to_read": "lots"}]}}, "full_size.sources[0].bytes_to_read: expected"),
    ]:
        bad = tmp_path / "rehearsal.json"
        bad.write_text(json.dumps(report))
        code, out, err = plan(str(TINY), "--gpus", "1", "--gpu", "h100", "--rehearsal", str(bad), capsys=capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_nanotron_stage_with_no_pipeline_ranks_is_one_line(tmp_path, capsys):
    import shutil

    recipe = tmp_path / "aurora-m-tiny"
    shutil.copytree(TINY, recipe)
    cap = recipe / "cap.yaml"
    cap.write_text(cap.read_text() + "\npp: 0\n")
    code, out, err = plan(str(recipe / "nanotron"), "--gpus", "8", "--gpu", "h100", capsys=capsys)
    assert code == 2 and "cap.yaml: pp: expected a positive number of ranks, got 0" in err, err


def test_the_gpu_check_says_why_it_skips_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: benchmarks/plan_check.py measures instead of skipping")
    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "plan_check.py")], capture_output=True, text=True, timeout=120
    )
    assert (
        result.returncode == 0
        and result.stdout.strip() == "skipped: no CUDA device (torch.cuda.is_available() is False)"
    )


def _fsdp2_rank(rank: int, world: int, port: int, results) -> None:
    """One rank of a real FSDP2 step on the CPU (gloo): its local shards' bytes after AdamW's step."""
    import os

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, _ = build(SHAPES[0])
    for block in model.transformer.h:  # per GPTBigCodeBlock, then the root: as accelerate's fsdp2 config wraps it
        fully_shard(block)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, SHAPES[0][4], (2, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()

    def local(t):
        return t.to_local() if hasattr(t, "to_local") else t

    weights = sum(local(p).numel() * p.element_size() for p in model.parameters())
    grads = sum(local(p.grad).numel() * p.grad.element_size() for p in model.parameters())
    states = sum(
        local(t).numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    results.put((weights, grads, states))
    dist.destroy_process_group()


def test_fsdp2_shards_match_the_plan_on_two_cpu_ranks():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # the test process has torch and transformers loaded: the ranks inherit them
    results = ctx.Queue()
    ranks = [ctx.Process(target=_fsdp2_rank, args=(r, 2, port, results)) for r in range(2)]
    for p in ranks:
        p.start()
    measured = [results.get(timeout=300) for _ in ranks]
    for p in ranks:
        p.join(timeout=60)
    _, planned = build(SHAPES[0])
    memory = memory_per_rank(planned, Launch("fsdp2", "fsdp2"), 2, 32, 2, cpu_setting(planned, 4, False))
    for weights, grads, states in measured:  # fp32 shards: 4 + 4 + 8 bytes a parameter over 2 ranks
        assert abs(memory.weights / weights - 1) < 0.15 and abs(memory.gradients / grads - 1) < 0.15
        assert abs(memory.optimizer / states - 1) < 0.15
