"""``aurora-m eval judge --responses FILE.jsonl [--judge NAME]``: a judge's verdicts on a responses file, and
its agreement with the labels the file carries (per language, with a confusion table). The last line is
``agreement: X`` (``agreement: none`` when no row is labelled). Rows: see :mod:`.labelled`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from ...errors import RecipeError, exit_on_failure
from ...logs import setup_logging
from .judge import DEFAULT_JUDGE, judge_language_problem, judge_name_problem, make_judge
from .labelled import LABELLED_SETS, agreement, confusion_table, read_responses, verdicts

logger = logging.getLogger(__name__)
PREVIEW = 60


def build_eval_judge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-m eval judge",
        description=(
            "Judge the responses of a JSON-lines file (prompt, response, language, optionally a refused label) "
            "and print the verdicts, the agreement with the labels per language and a confusion table; the last "
            "line is 'agreement: X'. The project's labelled sets: " + ", ".join(str(p) for p in LABELLED_SETS.values())
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--responses", required=True, help="JSON-lines file of responses")
    parser.add_argument(
        "--judge",
        default=DEFAULT_JUDGE,
        help="'refusal' (offline, en/fi/hi/ja/vi), chat:MODEL_ID (a chat model with a rubric) or a "
        "text-classification model id (default: refusal)",
    )
    return parser


def _label(value: bool | None) -> str:
    return "-" if value is None else "refused" if value else "complied"


def run_eval_judge(args: argparse.Namespace, out: Callable[[str], object]) -> int:
    """Judge ``args.responses`` and hand each line of the report to ``out`` (the CLI prints them)."""
    problem = judge_name_problem(args.judge)
    if problem:
        raise RecipeError(None, "--judge", problem)
    rows = read_responses(args.responses)
    problem = judge_language_problem(args.judge, [r.language for r in rows])
    if problem:
        raise RecipeError(args.responses, "language", problem)
    try:
        judge = make_judge(args.judge)
    except (OSError, ValueError) as err:
        raise RecipeError(None, "--judge", f"cannot use {args.judge!r}: {' '.join(str(err).split())[:300]}") from None
    found = verdicts(judge, rows)
    for row, verdict in zip(rows, found):
        text = " ".join(row.response.split())
        preview = text[:PREVIEW] + ("..." if len(text) > PREVIEW else "")
        out(f"line {row.line}\t{row.language}\tlabel {_label(row.refused)}\tverdict {_label(verdict)}\t{preview}")
    result = agreement(rows, found)
    counts = f"{len(rows)} responses, {result['n']} labelled, {result['no_verdict']} without a verdict"
    out(f"\njudge: {judge.name}; {counts}")
    if result["n"]:
        out("\n| language | labelled | agreement |\n|---|---|---|")
        for lang, entry in result["by_language"].items():
            out(f"| {lang} | {entry['n']} | {entry['agreement']:.3f} |")
        out("\n" + confusion_table(result) + "\n")
        out(f"agreement: {result['agreement']:.4f}")
    else:
        out("agreement: none (no row has a refused label)")
    return 0


def main(argv: list[str], out: Callable[[str], object]) -> int:
    args = build_eval_judge_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return run_eval_judge(args, out)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora-m", exc)
