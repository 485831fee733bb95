"""Push variants of a finished run to the Hub, one commit each; or write that commit to a folder (--dry-run
--out DIR); or export a variant into a folder of its own (--out DIR). The same command as `aurora-m publish`.

Reads the export folders the run's publish stage wrote (pushing never re-exports) and refuses a variant
whose lineage, evaluation or export is stale. The token comes from HF_TOKEN or `hf auth login`.

    python scripts/publish.py runs/aurora-m-tiny --variant aurora-m-tiny-base --dry-run --out exports/base
    python scripts/publish.py runs/aurora-m-tiny --all
"""

import argparse

from aurora_m.hub.options import add_publish_arguments
from aurora_m.scripting import run_script


class PublishParser(argparse.ArgumentParser):
    config_file = None

    def parse_args_and_config(self, argv=None):
        return (self.parse_args(argv),)


def make_parser():
    return add_publish_arguments(PublishParser(description=__doc__.split("\n\n")[0]))


def main(args, config_file=None):
    from aurora_m.cli import _publish

    return _publish(args, [])


if __name__ == "__main__":
    run_script(make_parser, main)
