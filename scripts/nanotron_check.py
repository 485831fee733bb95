"""GPU check of the nanotron engine on the tiny twin (needs CUDA, flash-attn and nanotron from source).

For TP=1 and TP=2: runs CAP then CAT of recipes/aurora-m-tiny/nanotron for a few steps (converting the tiny
model, emitting nanotron's config, launching torchrun, converting back into each stage's model/), then
checks that nanotron's step-0 logits (CAP's converted start) match transformers' within bf16 tolerance, and
that the exported CAT model/ loads in transformers and matches the plain-PyTorch reference forward over
CAT's last nanotron checkpoint. Exits 0 when every check passes, 1 otherwise; the README's "nanotron engine"
section says which of these have been seen passing.

    python scripts/nanotron_check.py --output-dir /tmp/nanotron-check [--tp 1 2] [--steps 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aurora-m-tiny" / "nanotron"
logger = logging.getLogger("nanotron_check")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="a new folder; one run folder per TP inside")
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2], help="tensor-parallel sizes to check")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of CAP and of CAT")
    parser.add_argument("--atol", type=float, default=0.1, help="max |logit difference| allowed (bf16 vs fp32)")
    parser.add_argument("--run-train", help="nanotron's run_train.py, when not beside a source install")
    return parser


def run(command: list[str], **kwargs) -> None:
    logger.info("$ %s", " ".join(map(str, command)))
    subprocess.run([str(c) for c in command], check=True, **kwargs)


def step0_logits(run_dir: Path, tp: int, ids_file: Path, out: Path, run_train: str | None) -> None:
    """nanotron's logits of CAP's converted start: CAP's config, resuming from nothing (init_method only)."""
    config = yaml.safe_load((run_dir / "cap" / "nanotron.yaml").read_text())
    empty = Path(tempfile.mkdtemp(dir=run_dir, prefix=".step0-"))
    config["checkpoints"]["resume_checkpoint_path"] = str(empty)
    config["checkpoints"]["checkpoints_path"] = str(empty)
    config["parallelism"].update(tp=tp, pp=1, dp=1)
    step0 = run_dir / "step0.yaml"
    step0.write_text(yaml.safe_dump(config, sort_keys=False))
    extra = ["--run-train", run_train] if run_train else []
    tokenizer = run_dir / "cap" / "data" / "tokenizer"
    run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={tp}", "-m",
         "aurora_m.engines.nanotron.entry", "--config-file", step0, "--tokenizer", tokenizer,
         "--dump-logits", ids_file, out, *extra], env={**os.environ, "CUDA_DEVICE_MAX_CONNECTIONS": "1"})
    shutil.rmtree(empty, ignore_errors=True)


def check_tp(tp: int, out_dir: Path, args) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM

    from aurora_m.engines.nanotron.convert import nanotron_to_hf
    from aurora_m.engines.nanotron.reference import reference_logits
    from aurora_m.engines.nanotron.runner import latest_checkpoint

    run_dir = out_dir / f"tp{tp}"
    # a few steps: the budget of `steps` optimizer steps of 8 x 128 tokens on one data-parallel rank
    tokens = args.steps * 8 * 128
    env = {**os.environ, "AURORA_M_NPROC_PER_NODE": str(tp)}
    run(["aurora-m", "run", RECIPE, "--output-dir", run_dir, "--stages", "cap,cat", "--tp", tp, "--train_tokens",
         tokens, "--max_steps", -1, "--save_steps", max(1, args.steps // 2)], env=env)
    failures = []
    ids = torch.randint(0, 4000, (2, 64), generator=torch.Generator().manual_seed(0))
    ids_file = run_dir / "ids.pt"
    torch.save(ids, ids_file)
    step0_logits(run_dir, tp, ids_file, run_dir / "step0-logits.pt", args.run_train)
    got = torch.load(run_dir / "step0-logits.pt")
    start = nanotron_to_hf(run_dir / "cap" / "nanotron-init", run_dir / "step0-hf", overwrite=True)
    hf = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        expected = hf(ids).logits
    diff = (got - expected).abs().max().item()
    logger.info("TP=%d step 0: max |nanotron - transformers| logit difference %.4f (atol %.3f)", tp, diff, args.atol)
    if not diff <= args.atol:
        failures.append(f"TP={tp}: step-0 logits differ by {diff:.4f}")
    last = latest_checkpoint(run_dir / "cat" / "nanotron")
    trained = AutoModelForCausalLM.from_pretrained(run_dir / "cat" / "model", dtype=torch.float32,
                                                   attn_implementation="eager").eval()
    with torch.no_grad():
        exported = trained(ids).logits
    ref = reference_logits(last, ids, tensor_parallel=tp > 1)
    diff = (exported - ref).abs().max().item()
    logger.info("TP=%d CAT step %s exported: max |transformers - reference| %.2e", tp, last.name, diff)
    if not diff <= 1e-3:
        failures.append(f"TP={tp}: the exported CAT model differs from its nanotron checkpoint by {diff:.2e}")
    return failures


def main(args) -> int:
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not torch.cuda.is_available():
        logger.error("no GPU: nanotron runs on CUDA only")
        return 1
    if max(args.tp) > torch.cuda.device_count():
        logger.error("TP=%d needs %d GPUs, this machine has %d", max(args.tp), max(args.tp), torch.cuda.device_count())
        return 1
    out_dir = Path(args.output_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        logger.error("%s is not empty: give a new folder", out_dir)
        return 1
    failures = [f for tp in args.tp for f in check_tp(tp, out_dir, args)]
    for failure in failures:
        logger.error(failure)
    logger.info("nanotron check: %s", "FAILED" if failures else f"passed for TP={args.tp}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(make_parser().parse_args()))
