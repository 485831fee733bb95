"""The ``aurora-m rehearse`` command's arguments and what runs it (:mod:`.run` does the work)."""

from __future__ import annotations

import math

from ..errors import RecipeError
from .mini_run import SAMPLE_MB, SAMPLE_ROWS


def add_rehearse_arguments(p) -> None:
    p.add_argument("recipe_dir")
    p.add_argument("--output-dir", required=True, help="a new folder for the report (rehearsal.json, rehearsal.md)")
    p.add_argument("--sample-mb", type=float, default=SAMPLE_MB, help="text read per source at most (default: 1 MB)")
    p.add_argument("--sample-rows", type=int, default=SAMPLE_ROWS, help="rows read per source at most (default: 200)")
    hub = p.add_mutually_exclusive_group()
    hub.add_argument(
        "--recorded-hub",
        action="store_true",
        help="read the recorded Hub snapshots (the default with HF_HUB_OFFLINE=1)",
    )
    p.add_argument(
        "--accelerate-config",
        action="append",
        metavar="[STAGE=]CONFIG",
        help="the launch each stage is checked against, as validate takes it (default: the ones the recipe's "
        "README launches each stage with)",
    )
    p.add_argument(
        "--checks-only",
        action="store_true",
        help="validate, read and clean only (seconds): no stage trained, evaluated or published in miniature",
    )
    hub.add_argument(
        "--live-hub",
        action="store_true",
        help="read the real Hub (the default when HF_HUB_OFFLINE is unset; with it set, refused: huggingface_hub "
        "reads it once, at import)",
    )


def rehearse_status(args) -> dict:
    """Rehearse; each stage's status (the report is in the output folder)."""
    from .run import offline, rehearse

    if not (math.isfinite(args.sample_mb) and args.sample_mb > 0):  # nan and inf pass a `<= 0` test
        raise RecipeError(None, "--sample-mb", f"expected a positive, finite number, got {args.sample_mb}")
    if args.sample_rows <= 0:
        raise RecipeError(None, "--sample-rows", f"expected a positive number, got {args.sample_rows}")
    if args.live_hub and offline():
        raise RecipeError(
            None, "--live-hub", "HF_HUB_OFFLINE is set, so nothing reads the Hub: unset it to rehearse online"
        )
    recorded = True if args.recorded_hub else False if args.live_hub else None
    report = rehearse(
        args.recipe_dir,
        args.output_dir,
        sample_mb=args.sample_mb,
        rows=args.sample_rows,
        recorded=recorded,
        launches=args.accelerate_config,
        checks_only=args.checks_only,
    )
    return {s["name"]: s["status"] for s in report["stages"]}
