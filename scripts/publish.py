"""Write one variant's export folder (safetensors, tokenizer, model card, plots) from a run folder.

Refuses a folder that exists and is not an earlier export (nothing in it is touched); replaces an
earlier export only with --overwrite. Refuses a variant whose lineage or evaluation is stale.

    python scripts/publish.py runs/aurora-m-tiny --variant aurora-m-tiny-base --out exports/base
"""

import argparse

from aurora_m.pipeline.publish import publish_from_run
from aurora_m.scripting import run_script


class PublishParser(argparse.ArgumentParser):
    config_file = None

    def parse_args_and_config(self, argv=None):
        return (self.parse_args(argv),)


def make_parser():
    parser = PublishParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a folder written by `aurora-m run`")
    parser.add_argument("--variant", required=True, help="variant name, as in the recipe's pipeline.yaml")
    parser.add_argument("--out", required=True, help="export folder to write (new, empty, or an earlier export)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    return parser


def main(args, config_file=None):
    return publish_from_run(args.run_dir, args.variant, args.out, overwrite=args.overwrite)


if __name__ == "__main__":
    run_script(make_parser, main)
