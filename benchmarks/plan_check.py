"""The plan's predictions against one real configuration on a GPU: peak memory and step time.

    python benchmarks/plan_check.py [--n-layer 8] [--n-embd 2048] [--n-head 16] [--seq-length 2048]
        [--micro-batch 4] [--steps 10] [--checkpointing] [--peak-tflops T] [--mfu X]

A GPTBigCode with StarCoderPlus' layout (multi-query, learned positions, 49,152-token vocabulary, dropout
0.1) in bfloat16, SDPA attention, trained with torch's AdamW on random tokens as one DDP rank would (no
other rank: the DDP buckets are not allocated, so the plan's bucket term is left out of the comparison).
Printed: the plan's weights, gradients, optimizer, activations and peak, next to
``torch.cuda.max_memory_allocated`` over the timed steps; the measured step time next to the plan's at
``--mfu`` (default the paper's), and the MFU the measured time implies. Ends with ``memory_ratio: X``
(predicted / measured), or ``skipped: REASON`` without a CUDA device.
"""

from __future__ import annotations

import argparse
import time

STARCODER_VOCAB = 49152


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=8)
    parser.add_argument("--n-embd", type=int, default=2048)
    parser.add_argument("--n-head", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=2048)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps, after 3 untimed")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing on")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by device name)")
    parser.add_argument(
        "--mfu", type=float, default=None, help="MFU of the predicted step time (default: the paper's)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from aurora_m.plan.activations import ActivationSetting
    from aurora_m.plan.flops import flops_per_step
    from aurora_m.plan.memory import GIB, Launch, memory_per_rank
    from aurora_m.plan.reference import paper_mfu
    from aurora_m.plan.shape import shape_from_config

    name = torch.cuda.get_device_name()
    peaks = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "MI250X": 191.5, "MI300X": 1307.4}
    peak = args.peak_tflops or next((v for k, v in peaks.items() if k.lower() in name.lower()), None)
    config = dict(
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        n_inner=4 * args.n_embd,
        vocab_size=STARCODER_VOCAB,
        n_positions=args.seq_length,
        multi_query=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    model_config = GPTBigCodeConfig(**config)
    model_config._attn_implementation = "sdpa"
    model = GPTBigCodeForCausalLM(model_config).to(device="cuda", dtype=torch.bfloat16)
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, STARCODER_VOCAB, (args.micro_batch, args.seq_length), device="cuda")

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # gradients stay allocated, as the plan counts them

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    measured = torch.cuda.max_memory_allocated()

    shape = shape_from_config(config, param_bytes=2, attn="sdpa")
    setting = ActivationSetting(act_bytes=2, mask_bytes=1, fused_attention=True, checkpointing=args.checkpointing)
    memory = memory_per_rank(shape, Launch("ddp", "ddp"), 1, args.seq_length, args.micro_batch, setting)
    predicted = memory.total - shape.params() * shape.param_bytes  # no DDP buckets on one process
    flops = flops_per_step(shape, args.seq_length, args.micro_batch)
    mfu = args.mfu or paper_mfu()[0]
    print(f"device: {name}; torch {torch.__version__}; {shape.params() / 1e6:,.1f}M parameters, bf16, SDPA")
    print(f"plan (GiB): {memory.gib()} (DDP buckets left out: one process)")
    print(f"peak memory: predicted {predicted / GIB:.2f} GiB, measured {measured / GIB:.2f} GiB")
    if peak:
        print(
            f"step time: measured {seconds * 1e3:.1f} ms, planned {flops / (mfu * peak * 1e12) * 1e3:.1f} ms at MFU "
            f"{mfu:.1%}; measured MFU {flops / seconds / (peak * 1e12):.3f}"
        )
    print(f"memory_ratio: {predicted / measured:.3f}")


if __name__ == "__main__":
    main()
