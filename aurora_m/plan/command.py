"""The ``aurora-m plan`` command: its arguments, checked in one line each, and the plan printed (and written)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RecipeError
from ..io import atomic_file
from .accelerators import accelerator
from .build import Cluster, build_plan, default_mfu
from .report import PLAN_WRITER
from .report import as_json as plan_json
from .report import render as render_plan


def add_plan_arguments(p) -> None:
    p.add_argument("recipe_dir")
    p.add_argument("--gpus", type=int, required=True, help="GPUs (ranks) of the cluster")
    p.add_argument("--gpu", help="accelerator kind (h100, h200, a100-80gb, mi250x-gcd, mi300x, ...)")
    p.add_argument("--mfu", type=float, help="model FLOPs utilisation, in (0, 1] (default: the paper's run, derived)")
    p.add_argument("--cpu-cores", type=int, help="CPU cores for the data step (its wall-clock hours)")
    p.add_argument(
        "--global-batch", type=int, help="sequences per pretraining step (default: the YAML's on these GPUs)"
    )
    p.add_argument("--gpu-memory", type=float, help="GiB per device, for a kind not in the table (with --peak-tflops)")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 TFLOPS per device (with --gpu-memory)")
    p.add_argument("--rehearsal", help="rehearsal.json of `aurora-m rehearse`: measured data-step figures")
    p.add_argument("--json", help="also write the plan as JSON to this file")


def plan_text(args) -> str:
    """The plan as the table printed (and, with ``--json FILE``, written as JSON)."""
    if args.json is not None:
        check_plan_target(Path(args.json))  # before the work: what is there already must be ours to replace
    if args.gpus < 1:
        raise RecipeError(None, "--gpus", f"expected a positive number of GPUs, got {args.gpus}")
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise RecipeError(None, "--mfu", f"expected a fraction in (0, 1], got {args.mfu}")
    for flag, value in (("--cpu-cores", args.cpu_cores), ("--global-batch", args.global_batch)):
        if value is not None and value < 1:
            raise RecipeError(None, flag, f"expected a positive number, got {value}")
    mfu, mfu_text = default_mfu()
    if args.mfu is not None:
        mfu, mfu_text = args.mfu, f"MFU {args.mfu:.1%}, given (--mfu); the paper's run: {mfu_text}"
    device = accelerator(args.gpu, args.gpu_memory, args.peak_tflops)
    cluster = Cluster(args.gpus, device, mfu, args.cpu_cores, args.global_batch)
    plans, assumptions = build_plan(args.recipe_dir, cluster, args.rehearsal)
    if args.json:
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps(plan_json(args.recipe_dir, plans, cluster, mfu_text, assumptions), indent=1))
    return render_plan(args.recipe_dir, plans, cluster, mfu_text, assumptions)


def check_plan_target(path: Path) -> None:
    """``--json``: a new file, or a plan this command wrote before; never a folder, a device, a link's target of
    another kind, or a file of the user's (a recipe YAML, /dev/null)."""
    if not path.name:
        raise RecipeError(None, "--json", "expected the name of a file to write the plan to")
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise RecipeError(None, "--json", f"{parent} is not a folder: {path} cannot be written")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise RecipeError(None, "--json", f"{path} exists and is not a regular file: name a new file")
    try:
        written_by = json.loads(path.read_text(encoding="utf-8")).get("written_by")
    except (OSError, ValueError, AttributeError):
        written_by = None
    if written_by != PLAN_WRITER:
        raise RecipeError(
            None,
            "--json",
            f"{path} exists and is not a plan this command wrote: name a new file (it is left as it is)",
        )
