"""The parser every script in ``scripts/`` shares: ``--config STAGE.yaml`` plus ``--key value`` overrides.

Works the same under ``python``, ``accelerate launch`` and ``torchrun``; a mistake in the YAML or a
flag prints one line naming the file and key and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import RecipeError
from .recipe import parse_stage, read_yaml


def stage_kind(config_file: str) -> str:
    """pretrain or sft, from which source list the YAML holds (for scripts that serve both)."""
    keys = read_yaml(config_file)
    return "sft" if "sft_sources" in keys else "pretrain"


def run_script(kind: str | None, main, argv: list[str] | None = None, description: str = ""):
    """Parse ``--config`` + overrides into the stage's dataclasses and call ``main(*dataclasses, config_file=...)``."""
    pre = argparse.ArgumentParser(description=description, add_help=False)
    pre.add_argument("--config", required=True, help="a stage YAML of a recipe folder")
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        pre.print_help()
        return None
    known, overrides = pre.parse_known_args(args)
    try:
        kind = kind or stage_kind(known.config)
        parsed = parse_stage(known.config, kind, overrides, has_model_input="--model_name_or_path" in overrides)
        return main(*parsed, config_file=known.config)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
