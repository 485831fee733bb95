"""Labelled responses and a judge's agreement with them: what ``aurora-m eval judge`` prints and what every
safety report carries beside its rates.

A responses file is JSON lines, one response a row: ``prompt``, ``response``, ``language`` (strings) and
optionally ``refused`` (true/false, the human label). Two sets ship with the project (:data:`LABELLED_SETS`),
in en, fi, hi, ja and vi, written by hand before the offline judge's cues were tuned and independently of
them:

- ``validation`` (40 per language): the cases the judge was developed against;
- ``test`` (20 per language, written separately and never used to tune): the unseen agreement.

Both hold the hard cases: a refusal cue followed by an answer ("I can't stress this enough: Step 1 ..."),
partial compliance, refusals without stock phrases, after a long preamble, or in another language than the
prompt, and helpful answers that say "can't" or "no". Agreement is the share of labelled rows whose verdict
equals the label (a row without a verdict counts as a disagreement).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ...errors import RecipeError

LABELLED = Path(__file__).resolve().parent / "labelled"
LABELLED_SETS = {"validation": LABELLED / "validation.jsonl", "test": LABELLED / "test.jsonl"}
FIELDS = ("prompt", "response", "language")


@dataclass(frozen=True)
class LabelledRow:
    line: int
    prompt: str
    response: str
    language: str
    refused: bool | None  # the label; None: unlabelled


def read_responses(path: str | Path) -> list[LabelledRow]:
    """The rows of a responses file; a bad row is one RecipeError naming the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "responses file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecipeError(path, f"line {number}", f"not a JSON object ({err.msg})") from None
            if not isinstance(row, dict):
                raise RecipeError(path, f"line {number}", "expected a JSON object with prompt, response, language")
            for name in FIELDS:
                if not isinstance(row.get(name), str):
                    got = "missing" if name not in row else f"got {type(row[name]).__name__}"
                    raise RecipeError(path, f"line {number}: {name}", f"expected a string ({got})")
            label = row.get("refused")
            if label is not None and not isinstance(label, bool):
                raise RecipeError(path, f"line {number}: refused", f"expected true or false, got {label!r}")
            language = row["language"].strip().lower()
            if not language:
                raise RecipeError(path, f"line {number}: language", "expected a language code, got ''")
            rows.append(LabelledRow(number, row["prompt"], row["response"], language, label))
    if not rows:
        raise RecipeError(path, None, "no response rows")
    return rows


def verdicts(judge, rows: list[LabelledRow]) -> list[bool | None]:
    out = judge.judge([r.prompt for r in rows], [r.response for r in rows], [r.language for r in rows])
    if len(out) != len(rows):
        raise ValueError(f"judge {judge.name!r} gave {len(out)} verdicts for {len(rows)} responses")
    return [None if v is None else bool(v) for v in out]


def _name(verdict: bool | None) -> str:
    return "none" if verdict is None else "refused" if verdict else "complied"


def agreement(rows: list[LabelledRow], found: list[bool | None]) -> dict:
    """Agreement overall and per language, and the confusion counts (label -> verdict), on the labelled rows."""
    by_language: dict[str, list[bool]] = defaultdict(list)
    confusion: dict[str, dict[str, int]] = {
        label: {v: 0 for v in ("refused", "complied", "none")} for label in ("refused", "complied")
    }
    for row, verdict in zip(rows, found):
        if row.refused is None:
            continue
        by_language[row.language].append(verdict == row.refused)
        confusion[_name(row.refused)][_name(verdict)] += 1
    hits = [x for flags in by_language.values() for x in flags]
    return {
        "agreement": round(sum(hits) / len(hits), 4) if hits else None,
        "n": len(hits),
        "by_language": {
            lang: {"agreement": round(sum(flags) / len(flags), 4), "n": len(flags)}
            for lang, flags in sorted(by_language.items())
        },
        "confusion": confusion,
        "no_verdict": sum(v is None for v in found),
    }


def shipped_agreement(judge) -> dict:
    """The judge's agreement on each shipped labelled set, in the languages it judges (``set -> agreement``)."""
    out = {}
    for name, path in LABELLED_SETS.items():
        rows = read_responses(path)
        covered = getattr(judge, "languages", None)  # a plugged-in judge may not say: it gets every row
        if covered is not None:
            rows = [r for r in rows if r.language in covered]
        out[name] = agreement(rows, verdicts(judge, rows))
    return out


def confusion_table(result: dict) -> str:
    """Markdown: rows the label, columns the verdict."""
    lines = ["| label \\ verdict | refused | complied | none |", "|---|---|---|---|"]
    for label, counts in result["confusion"].items():
        lines.append(f"| {label} | {counts['refused']} | {counts['complied']} | {counts['none']} |")
    return "\n".join(lines)
