"""The publish command's arguments, shared by ``aurora-m publish`` and ``scripts/publish.py`` (no heavy imports).

aurora-m publish RUN_DIR --variant NAME | --all                 push the run's export of each (one commit each)
aurora-m publish RUN_DIR --variant NAME --dry-run --out DIR     write the exact commit into DIR, print it
aurora-m publish RUN_DIR --variant NAME --out DIR               export only (a fresh export folder, no push)
"""

from __future__ import annotations

import argparse


def add_publish_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("run_dir", help="a folder written by `aurora-m run`")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", help="variant name, as in the recipe's pipeline.yaml")
    which.add_argument("--all", action="store_true", help="every evaluated variant of the run")
    parser.add_argument(
        "--out",
        help="with --dry-run: write the exact commit here; alone: export here without "
        "pushing (with --all: one folder per variant inside)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the operations of each push and write the files to --out; nothing reaches the Hub",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export or dry run in --out; when pushing, replace what the target branch holds",
    )
    return parser
