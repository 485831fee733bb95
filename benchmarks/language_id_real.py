"""What language ID does, with the data step's default settings, to a folder of real paragraphs.

    python benchmarks/language_id_real.py DIR [--removed] [--min-score fi=0.3 ...] [--any-rank yo ...]

DIR holds one ``<lang>.jsonl`` per language (a LID-176 code; rows ``{"text": ..., "url": ...}``), each row a
document of a source declared in that language; files named ``code*.jsonl`` are a ``language: code`` source.
The filters are built as the clean phase builds them (``aurora_m/data/clean_pipeline.py``): a prose source gets
``LanguageId.for_source(language, args, routes)`` with ``MixtureArguments``' defaults (``--min-score`` and
``--any-rank`` set ``language_id_min_score`` and ``language_id_any_rank``), a code source gets
``CodeQuality()`` and no language ID. Prints, per language, the paragraphs, how many were removed and why, and
the URLs' domains; ``--removed`` lists each removed paragraph (length, LID-176's top label and score). Then
the catch rate: every paragraph of language X put in the source of every other language Y, both with
``mislabelled: drop`` (must be removed) and ``mislabelled: reroute`` (must be rerouted to X's source).
Nothing is shipped with it: collect the paragraphs yourself (docs/adapting.md says how ours were collected).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from urllib.parse import urlparse

from datatrove.data import Document

from aurora_m.args import MixtureArguments
from aurora_m.data.clean import CodeQuality, LanguageId
from aurora_m.languages import CODE, is_language, language_order


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="folder of <lang>.jsonl and code*.jsonl files")
    p.add_argument("--removed", action="store_true", help="list every removed paragraph")
    p.add_argument("--min-score", nargs="*", default=[], help="language_id_min_score entries, e.g. fi=0.3")
    p.add_argument("--any-rank", nargs="*", default=[], help="language_id_any_rank entries, e.g. yo ha")
    p.add_argument("--no-cross", action="store_true", help="skip the cross-language catch rates")
    return p


def read_folder(folder: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for file in sorted(folder.glob("*.jsonl")):
        language = CODE if file.stem.startswith(CODE) else file.stem
        if not is_language(language):
            raise SystemExit(f"{file}: expected <LID-176 code>.jsonl or code*.jsonl, got {file.name!r}")
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("text"), str):
                    raise SystemExit(f"{file}:{n}: expected a 'text' string")
                out[language].append(row)
    return out


def where(url: str) -> str:
    """A URL's domain (a GitHub URL's owner/repository too)."""
    parsed = urlparse(url)
    if parsed.netloc == "github.com":
        return "github.com/" + "/".join(parsed.path.split("/")[1:3])
    return parsed.netloc or "?"


def build_filter(language: str, args: MixtureArguments, routes: dict[str, str] | None = None):
    """The clean phase's filter for a source in ``language``, from the stage's arguments."""
    if language == CODE:
        return CodeQuality()
    return LanguageId.for_source(language, args, routes)


def run_filter(step, rows: list[dict], language: str) -> list[tuple[dict, Document, object]]:
    """(row, document, verdict) per row; verdict True (kept) or (False, reason)."""
    out = []
    for i, row in enumerate(rows):
        doc = Document(text=row["text"], id=f"{language}/{i}", metadata={"source": language, "language": language})
        out.append((row, doc, step.filter(doc)))
    return out


def prose_table(data: dict[str, list[dict]], args: MixtureArguments, show_removed: bool) -> None:
    print("| language | paragraphs | removed | % removed | why | domains |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    removed_rows = []
    for language in language_order(data):
        rows = data[language]
        results = run_filter(build_filter(language, args), rows, language)
        removed = [(row, doc, verdict) for row, doc, verdict in results if verdict is not True]
        why = collections.Counter(verdict[1] for _, _, verdict in removed)
        domains = collections.Counter(where(row.get("url", "")) for row in rows)
        print(
            f"| {language} | {len(rows)} | {len(removed)} | {100 * len(removed) / max(len(rows), 1):.1f} | "
            f"{', '.join(f'{k} {v}' for k, v in why.items()) or '-'} | "
            f"{', '.join(f'{d} {n}' for d, n in domains.most_common())} |"
        )
        removed_rows += [(language, row, doc, verdict) for row, doc, verdict in removed]
    if show_removed and removed_rows:
        print("\nremoved (declared language, length, reason, LID-176 top label and score, url, text):")
        for language, row, doc, verdict in removed_rows:
            label = doc.metadata.get("language_detected", "-")
            score = doc.metadata.get("language_score", float("nan"))
            text = " ".join(row["text"].split())
            print(f"- {language} {len(row['text'])} {verdict[1]} {label} {score:.3f} {row.get('url', '')}\n    {text}")


def cross_table(data: dict[str, list[dict]], args: MixtureArguments) -> None:
    """Text of X in a source declared Y: removed (drop) and rerouted to X (reroute), per X, over all Y."""
    prose = [lang for lang in language_order(data) if lang != CODE]
    reroute = MixtureArguments(**{**vars(args), "mislabelled": "reroute"})
    routes = {lang: f"src-{lang}" for lang in prose}
    print("\ncross-language: paragraphs of X in a source declared Y (every other Y of the folder)")
    print("| X | placements | removed (drop) | % | rerouted to X (reroute) | % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for x in prose:
        n = caught = rerouted = 0
        for y in prose:
            if y == x:
                continue
            n += len(data[x])
            caught += sum(v is not True for _, _, v in run_filter(build_filter(y, args), data[x], y))
            results = run_filter(build_filter(y, reroute, routes), data[x], y)
            rerouted += sum(v is True and doc.metadata["source"] == routes[x] for _, doc, v in results)
        print(
            f"| {x} | {n} | {caught} | {100 * caught / max(n, 1):.1f} | "
            f"{rerouted} | {100 * rerouted / max(n, 1):.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    ns = make_parser().parse_args(argv)
    try:
        min_score = {k: float(v) for k, v in (item.split("=", 1) for item in ns.min_score)}
    except ValueError:
        print(f"--min-score: expected lang=score entries, got {ns.min_score}", file=sys.stderr)
        return 2
    args = MixtureArguments(language_id_min_score=min_score, language_id_any_rank=list(ns.any_rank))
    data = read_folder(ns.folder)
    prose_table(data, args, ns.removed)
    if not ns.no_cross:
        cross_table(data, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
