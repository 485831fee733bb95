"""Check of the nanotron engine on the tiny twin, against the transformers engine (needs nanotron from source).

For each TP size: runs CAP then CAT of recipes/aurora-m-tiny/nanotron for a few steps (converting the tiny model,
emitting nanotron's config, launching torchrun, converting back into each stage's model/), then checks that

1. nanotron's step-0 logits (CAP's converted start, loaded by nanotron at that TP) match transformers';
2. its per-step training losses of CAP and CAT match the transformers engine's on the same recipe, budget and
   data (run once, side by side in this script), within the bf16 tolerance;
3. the exported CAT model/ loads in transformers and matches the plain-PyTorch reference forward over CAT's last
   nanotron checkpoint.

Exits 0 when every check passes, 1 otherwise. On a GPU node; ``--allow-cpu`` runs it on a nanotron checkout
ported to the CPU (tools/nanotron_cpu: gloo, flash-attn replaced by PyTorch attention), which proves the wiring,
numerics and data order, not the CUDA kernels or NCCL.

    python scripts/nanotron_check.py --output-dir /tmp/nanotron-check [--tp 1 2] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from aurora_m.engines.nanotron.folders import NanotronDirs
from aurora_m.layout import StageDir

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "aurora-m-tiny"
logger = logging.getLogger("nanotron_check")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="a new folder; one run folder per engine and TP inside")
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2], help="tensor-parallel sizes to check")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of CAP and of CAT")
    parser.add_argument("--atol", type=float, default=0.1, help="max |logit difference| allowed (bf16 vs fp32)")
    parser.add_argument("--loss-atol", type=float, default=0.05, help="max |loss difference| allowed per step")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (a CPU port of nanotron)")
    return parser


def run(command: list, **kwargs) -> None:
    logger.info("$ %s", " ".join(map(str, command)))
    subprocess.run([str(c) for c in command], check=True, **kwargs)


def run_stages(recipe: Path, run_dir: Path, steps: int, extra: list, env: dict) -> None:
    """CAP and CAT on ``steps`` optimizer steps of 8 x 128 tokens each (one data-parallel rank: the budget's steps)."""
    budget = ["--train_tokens", steps * 8 * 128, "--max_steps", steps, "--save_steps", max(1, steps // 2)]
    cli = [sys.executable, "-m", "aurora_m.cli", "run", recipe, "--output-dir", run_dir, "--stages", "cap,cat"]
    run([*cli, *budget, *extra], env=env)


def losses(run_dir: Path, stage: str) -> list[float]:
    return [e["loss"] for e in json.loads(StageDir(run_dir / stage).log_history.read_text()) if "loss" in e]


def step0_logits(run_dir: Path, tp: int, ids_file: Path, out: Path) -> None:
    """nanotron's logits of CAP's converted start: CAP's config, resuming from nothing (init_method only)."""
    config = yaml.safe_load(NanotronDirs(StageDir(run_dir / "cap")).config.read_text())
    empty = Path(tempfile.mkdtemp(dir=run_dir, prefix=".step0-"))
    config["checkpoints"]["resume_checkpoint_path"] = str(empty)
    config["checkpoints"]["checkpoints_path"] = str(empty)
    config["parallelism"].update(tp=tp, pp=1, dp=1)
    step0 = run_dir / "step0.yaml"
    step0.write_text(yaml.safe_dump(config, sort_keys=False))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={tp}"]
    entry = ["-m", "aurora_m.engines.nanotron.entry", "--config-file", step0, "--data", run_dir / "cap" / "data"]
    run([*torchrun, *entry, "--dump-logits", ids_file, out], env={**os.environ, "CUDA_DEVICE_MAX_CONNECTIONS": "1"})
    shutil.rmtree(empty, ignore_errors=True)


def compare_losses(tp: int, ours: Path, reference: Path, atol: float) -> list[str]:
    failures = []
    for stage in ("cap", "cat"):
        got, want = losses(ours, stage), losses(reference, stage)
        diff = max((abs(a - b) for a, b in zip(got, want)), default=float("inf"))
        logger.info(
            "TP=%d %s losses: nanotron %s, transformers %s, max |difference| %.4f (atol %.3f)",
            tp,
            stage,
            [round(x, 4) for x in got],
            [round(x, 4) for x in want],
            diff,
            atol,
        )
        if len(got) != len(want) or not diff <= atol:
            failures.append(f"TP={tp} {stage}: {len(got)} nanotron losses vs {len(want)}, max difference {diff:.4f}")
    return failures


def check_tp(tp: int, out_dir: Path, reference: Path, args) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM

    from aurora_m.engines.nanotron.convert import nanotron_to_hf
    from aurora_m.engines.nanotron.reference import reference_logits
    from aurora_m.engines.nanotron.runner import latest_checkpoint

    run_dir = out_dir / f"nanotron-tp{tp}"
    env = {**os.environ, "AURORA_M_NPROC_PER_NODE": str(tp)}
    run_stages(TINY / "nanotron", run_dir, args.steps, ["--tp", tp], env)
    failures = compare_losses(tp, run_dir, reference, args.loss_atol)
    ids = torch.randint(0, 4000, (2, 64), generator=torch.Generator().manual_seed(0))
    ids_file = run_dir / "ids.pt"
    torch.save(ids, ids_file)
    step0_logits(run_dir, tp, ids_file, run_dir / "step0-logits.pt")
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
    trained = AutoModelForCausalLM.from_pretrained(
        run_dir / "cat" / "model", dtype=torch.float32, attn_implementation="eager"
    ).eval()
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

    from aurora_m.engines.nanotron import require_nanotron
    from aurora_m.errors import RecipeError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.steps < 2:
        logger.error("--steps %d: give at least 2 (a checkpoint halfway, then the last)", args.steps)
        return 1
    try:
        require_nanotron()
    except RecipeError as err:
        logger.error("%s", err)
        return 1
    if not args.allow_cpu:
        if not torch.cuda.is_available():
            logger.error("no GPU: nanotron runs on CUDA only (--allow-cpu for a CPU port, see tools/nanotron_cpu)")
            return 1
        if max(args.tp) > torch.cuda.device_count():
            logger.error(
                "TP=%d needs %d GPUs, this machine has %d", max(args.tp), max(args.tp), torch.cuda.device_count()
            )
            return 1
    out_dir = Path(args.output_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        logger.error("%s is not empty: give a new folder", out_dir)
        return 1
    reference = out_dir / "transformers"
    run_stages(TINY, reference, args.steps, [], dict(os.environ))
    failures = [f for tp in args.tp for f in check_tp(tp, out_dir, reference, args)]
    for failure in failures:
        logger.error(failure)
    logger.info("nanotron check: %s", "FAILED" if failures else f"passed for TP={args.tp}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(make_parser().parse_args()))
