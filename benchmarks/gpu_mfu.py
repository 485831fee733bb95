"""Tokens/s and model FLOPs utilisation (MFU) of a ~1B GPTBigCode CAP step on one GPU, through our engine.

    python benchmarks/gpu_mfu.py [--n-embd 2048] [--n-layer 24] [--n-head 16] [--seq-length 2048]
        [--batch-size 8] [--grad-accum 1] [--steps 10] [--warmup 5] [--attn sdpa|flash_attention_2]
        [--activation-checkpointing] [--compile] [--dtype bfloat16|float32] [--peak-tflops T]

The model is StarCoderPlus' architecture (multi-query attention, learned positions, StarCoder's
49,152-token vocabulary, dropout 0.1) at ~1.1B parameters by default, built from a config.json in a
temp folder. The data is synthetic: uniform random token ids written as a one-source dataset in the
data step's own layout (``.ds`` shards, the sampling index, ``mixture.json``, a word-level tokenizer
of that vocabulary), which ``aurora_m.train.pretrain.build_trainer`` reads like any other; the run
goes through ``train_and_save`` as a CAP stage does (our Trainer subclass, packed stream, callbacks).
Trainer settings are the 15B CAP recipe's (``recipes/aurora-m-15b/cap.yaml``: AdamW, lr, betas,
weight decay, clipping, schedule, ``logging_steps``, bf16 autocast, parameters in ``--dtype``,
bfloat16 as there) but a one-step warm-up of the learning rate (the run is short; the speed is the
same); evaluation and checkpoint saving are off, the final save is untimed.

Timed: ``--steps`` optimizer steps after ``--warmup`` (compilation, allocator warm-up), between two
``torch.cuda.synchronize()`` at the ends of optimizer steps. FLOPs per token, PaLM's model FLOPs
(Chowdhery et al. 2022, appendix B; activation-checkpointing recomputation not counted):

    6 x N + 12 x n_layer x n_embd x seq_length

with N the non-embedding parameters (all but the token and position embeddings; the output
projection, tied to the token embedding, is left out as in that formula: the figure with it,
+6 x vocab x n_embd, is printed too). MFU = tokens/s x FLOPs per token / peak, the peak being the
GPU's dense bf16 tensor-core figure from :data:`PEAK_BF16_TFLOPS` (by device name) or
``--peak-tflops``.

Ends with ``mfu: X`` (a fraction), or ``skipped: REASON`` (exit 0) without a CUDA device or a known
peak. ``--cpu`` runs the same path on the CPU against ``--peak-tflops`` (a check of the script).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aurora-m-15b" / "cap.yaml"
TITLE = "CAP MFU benchmark"
SOURCE = "synthetic"
EOS = "<|endoftext|>"
STARCODER_VOCAB = 49152
# dense (no sparsity) bf16 tensor-core peaks from the vendor's datasheets, in TFLOPS; first match wins
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
)
RECIPE_TRAINER_KEYS = (
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "max_grad_norm",
    "logging_steps",
    "seed",
    "dataloader_num_workers",
)

logger = logging.getLogger("gpu_mfu")


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def flops_per_token(n_params: int, embedding_params: int, n_layer: int, n_embd: int, seq_length: int) -> int:
    """PaLM's model FLOPs per token of a training step: 6 x non-embedding parameters + attention."""
    return 6 * (n_params - embedding_params) + 12 * n_layer * n_embd * seq_length


# ----------------------------------------------------------------------------- set-up
def write_model_config(path: Path, n_embd: int, n_layer: int, n_head: int, n_positions: int) -> Path:
    """StarCoderPlus' config (multi-query, learned positions, its dropout) at the benchmark's shape."""
    from aurora_m.patches import read_config_json

    if n_embd % n_head:
        raise SystemExit(f"--n-embd {n_embd} is not divisible by --n-head {n_head}")
    config = read_config_json("starcoderplus")
    config.update(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_inner=4 * n_embd, n_positions=n_positions)
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return path


def write_synthetic_dataset(root: Path, vocab: int, seq_length: int, sequences: int, seed: int = 0):
    """Random tokens in the data step's layout: one source, its ``.ds`` shard, the index, mixture.json, tokenizer."""
    import numpy as np
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from aurora_m.data.mixer import MixRow
    from aurora_m.data.stream import build_index
    from aurora_m.layout import DatasetDir

    if vocab > 2**16:
        raise SystemExit(f"--vocab {vocab} does not fit the 2-byte tokens written here")
    data = DatasetDir(root)
    words = {EOS: 0, **{f"t{i}": i for i in range(1, vocab)}}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(words, unk_token=EOS)), eos_token=EOS, pad_token=EOS, unk_token=EOS
    )
    tokenizer.save_pretrained(data.tokenizer)
    shard_dir = data.source_tokens(SOURCE)
    shard_dir.mkdir(parents=True)
    tokens = np.random.default_rng(seed).integers(0, vocab, size=sequences * seq_length, dtype=np.uint16)
    tokens.tofile(shard_dir / f"00000_{SOURCE}.ds")
    row = MixRow(
        name=SOURCE,
        rule="weight",
        share=1.0,
        windows=sequences,
        tokens=sequences * seq_length,
        epochs=1.0,
        available_tokens=sequences * seq_length,
        available_windows=sequences,
    )
    build_index([row], seed, data.index)
    data.mixture_json.write_text(
        json.dumps(
            {
                "seq_length": seq_length,
                "token_size": 2,
                "tokens": sequences * seq_length,
                "sequences": sequences,
                "budget_tokens": sequences * seq_length,
                "seed": seed,
                "tokenizer_vocab": vocab,
                "sources": [{"name": SOURCE, "rule": "weight", "share": 1.0, "windows": sequences}],
            },
            indent=1,
        )
        + "\n"
    )
    return data


def stage_arguments(args, config_json: Path, data_root: Path, output_dir: Path, total_steps: int):
    from transformers import TrainingArguments

    from aurora_m.args import MixtureArguments, ModelArguments
    from aurora_m.overrides import read_yaml

    recipe = read_yaml(RECIPE)
    model_args = ModelArguments(
        base_config=str(config_json), config_patches=["tokenizer_vocab", f"dtype:{args.dtype}", f"attn:{args.attn}"]
    )
    sequences_per_step = args.batch_size * args.grad_accum
    mix_args = MixtureArguments(
        dataset_dir=str(data_root),
        seq_length=args.seq_length,
        train_tokens=total_steps * sequences_per_step * args.seq_length,
    )
    trainer_keys = {k: recipe[k] for k in RECIPE_TRAINER_KEYS if k in recipe}
    if args.cpu:
        trainer_keys["dataloader_num_workers"] = 0  # a check of the script: no worker processes to start
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_steps=total_steps,
        warmup_steps=1,
        bf16=True,
        use_cpu=args.cpu,
        activation_checkpointing=args.activation_checkpointing,
        torch_compile=args.compile,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        **trainer_keys,
    )
    return model_args, mix_args, training_args


def window_callback(warmup: int, steps: int, cuda: bool, result: dict):
    """Times optimizer steps warmup+1 .. warmup+steps between device synchronisations, then stops training."""
    import torch
    from transformers import TrainerCallback

    class Window(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                result["start"] = time.perf_counter()
            elif state.global_step == warmup + steps:
                if cuda:
                    torch.cuda.synchronize()
                    result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
                result["end"] = time.perf_counter()
                control.should_training_stop = True

    return Window()


# ----------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-embd", type=int, default=2048)
    parser.add_argument("--n-layer", type=int, default=24)
    parser.add_argument("--n-head", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=STARCODER_VOCAB, help="vocabulary of the synthetic tokenizer")
    parser.add_argument("--seq-length", type=int, default=2048, help="tokens per sequence (Aurora-M's 2048)")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device sequences per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first (compilation too)")
    parser.add_argument(
        "--attn",
        default="sdpa",
        choices=("sdpa", "flash_attention_2", "eager"),
        help="attention implementation (the attn: config patch)",
    )
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute activations in backward (its extra FLOPs are not counted in MFU)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (TrainingArguments)")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="parameter dtype (the dtype: config patch; the 15B recipe's is bfloat16); "
        "compute is bf16 autocast either way",
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for a GPU not in the table"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="run on the CPU (a check of the script; needs --peak-tflops)"
    )
    parser.add_argument("--workdir", default=None, help="keep the synthetic data and run here (default: a temp dir)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return
    if args.cpu and args.peak_tflops is None:
        raise SystemExit("--cpu needs --peak-tflops (no table of CPU peaks)")
    if args.attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise SystemExit("--attn flash_attention_2 needs the flash-attn package (pip install flash-attn)")
    if min(args.steps, args.warmup, args.batch_size, args.grad_accum) < 1:
        raise SystemExit("--steps, --warmup, --batch-size and --grad-accum must be at least 1")
    from aurora_m.layout import StageDir
    from aurora_m.logs import setup_logging
    from aurora_m.patches import AURORA_M_CONTEXT
    from aurora_m.train.common import train_and_save
    from aurora_m.train.pretrain import build_trainer

    setup_logging()
    device_name = "CPU" if args.cpu else torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(device_name)
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        config_json = write_model_config(
            tmp / "config.json", args.n_embd, args.n_layer, args.n_head, max(AURORA_M_CONTEXT, args.seq_length)
        )
        data = write_synthetic_dataset(
            tmp / "synthetic-data", args.vocab, args.seq_length, total_steps * args.batch_size * args.grad_accum
        )
        stage_dir = StageDir(tmp / "cap")
        model_args, mix_args, training_args = stage_arguments(
            args, config_json, data.root, stage_dir.root, total_steps
        )
        trainer = build_trainer(model_args, mix_args, training_args, RECIPE, TITLE)
        result: dict = {}
        trainer.add_callback(window_callback(args.warmup, args.steps, not args.cpu, result))
        train_and_save(trainer, stage_dir, TITLE)
        if "end" not in result:
            raise SystemExit(f"training stopped before step {total_steps}")

        model = trainer.model
        params = sum(p.numel() for p in model.parameters())
        embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
        config = model.config
        per_token = flops_per_token(params, embeddings, config.n_layer, config.n_embd, args.seq_length)
        with_head = per_token + 6 * config.vocab_size * config.n_embd
        tokens = args.steps * args.batch_size * args.grad_accum * args.seq_length
        seconds = result["end"] - result["start"]
        achieved = tokens / seconds * per_token / 1e12
        print(f"device: {device_name}; torch {torch.__version__}")
        print(
            f"model: GPTBigCode {params / 1e6:,.1f}M parameters ({(params - embeddings) / 1e6:,.1f}M non-embedding; "
            f"n_embd {config.n_embd}, n_layer {config.n_layer}, n_head {config.n_head}, multi-query, "
            f"vocab {config.vocab_size}), parameters in {next(model.parameters()).dtype}, bf16 autocast"
        )
        print(
            f"step: {args.batch_size} x {args.grad_accum} accumulation x {args.seq_length} tokens = "
            f"{args.batch_size * args.grad_accum * args.seq_length:,} tokens; attn {config._attn_implementation}, "
            f"activation checkpointing {'on' if model.is_gradient_checkpointing else 'off'}, torch.compile "
            f"{'on' if args.compile else 'off'}"
        )
        print(
            f"timed: {args.steps} steps after {args.warmup} warm-up steps: {seconds:.2f} s, "
            f"{seconds / args.steps * 1e3:.0f} ms/step"
            + (f"; peak memory {result['peak_memory_gb']:.1f} GiB" if "peak_memory_gb" in result else "")
        )
        print(
            f"FLOPs per token: 6 x N + 12 x n_layer x n_embd x seq = {per_token / 1e9:.4g} GFLOP "
            f"({with_head / 1e9:.4g} with the output projection)"
        )
        print(f"tokens/s: {tokens / seconds:,.0f}")
        print(f"model TFLOPS achieved: {achieved:.1f}" + (f" of {peak:.0f} peak (dense bf16)" if peak else ""))
        if peak is None:
            print(f"skipped: no known bf16 peak for {device_name!r}: pass --peak-tflops")
            return
        print(f"mfu_with_output_projection: {tokens / seconds * with_head / 1e12 / peak:.4f}")
        print(f"mfu: {achieved / peak:.4f}")


if __name__ == "__main__":
    main()
