"""Write one variant's export folder (safetensors, tokenizer, model card, plots) from a run folder.

    python scripts/publish.py runs/aurora-m-tiny --variant aurora-m-tiny-base --out exports/base
"""

import argparse
import sys

from aurora_m.errors import RecipeError
from aurora_m.pipeline import publish_from_run


def main(run_dir: str, variant: str, out: str):
    return publish_from_run(run_dir, variant, out)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a folder written by `aurora-m run`")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    try:
        main(args.run_dir, args.variant, args.out)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
