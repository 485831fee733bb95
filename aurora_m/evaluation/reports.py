"""Reports across variants, written by the eval stage next to the per-variant results:

- ``results.md``: one row per variant, the headline number of each suite;
- ``forgetting.md`` / ``forgetting.png``: code pass@1 and per-language perplexity variant by variant, in the
  order the stage lists them (base -> after CAP -> after CAT -> after safety SFT): did code survive the new
  languages, and did the languages improve;
- ``safety_transfer.md`` / ``safety_transfer.png``: refusal rate by language by variant (safety suite).
"""

from __future__ import annotations

import logging

from ..layout import StageDir
from ..plots import _finish, _pyplot, plot_perplexity

logger = logging.getLogger(__name__)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def code_pass1(result: dict) -> dict[str, float]:
    """benchmark -> greedy pass@1 (or sampled pass@1) of one variant's code suite; {} without one."""
    code = result.get("code") or {}
    out = {}
    for bench, r in (code.get("benchmarks") or {}).items():
        value = (r.get("greedy") or {}).get("pass@1")
        if value is None:
            value = (r.get("sampled") or {}).get("pass@1")
        if value is not None:
            out[bench] = value
    return out


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def forgetting_rows(all_results: dict[str, dict]) -> tuple[list[str], list[list]]:
    langs = list(dict.fromkeys(lang for r in all_results.values() for lang in r.get("perplexity") or {}))
    benches = list(dict.fromkeys(b for r in all_results.values() for b in code_pass1(r)))
    header = ["variant", *[f"{b} pass@1" for b in benches], *[f"ppl {lang}" for lang in langs]]
    rows = [
        [name, *[code_pass1(r).get(b) for b in benches], *[(r.get("perplexity") or {}).get(lang) for lang in langs]]
        for name, r in all_results.items()
    ]
    return header, rows


def results_rows(all_results: dict[str, dict]) -> tuple[list[str], list[list]]:
    header = ["variant", "mean perplexity", "code pass@1", "harness (mean)", "refusal (all)", "over-refusal"]
    rows = []
    for name, r in all_results.items():
        ppl = list((r.get("perplexity") or {}).values())
        code = list(code_pass1(r).values())
        harness = list(((r.get("harness") or {}).get("by_language") or {}).values())
        safety = r.get("safety") or {}
        refusal = [v.get("all") for v in (safety.get("refusal_rate") or {}).values() if isinstance(v, dict)]
        over = list((safety.get("over_refusal") or {}).values())
        refusal = [v for v in refusal if v is not None]
        rows.append([name] + [sum(x) / len(x) if x else None for x in (ppl, code, harness, refusal, over)])
    return header, rows


def write_reports(all_results: dict[str, dict], dirs: StageDir) -> None:
    from ..io import write_text

    ppl = {name: r["perplexity"] for name, r in all_results.items() if r.get("perplexity")}
    if ppl:
        plot_perplexity(ppl, dirs.perplexity_png, "held-out perplexity per language")
    header, rows = results_rows(all_results)
    write_text(dirs.results_md, "# Evaluation results\n\n" + table(header, rows))
    header, rows = forgetting_rows(all_results)
    write_text(dirs.forgetting_md, "# Forgetting: code and languages, stage by stage\n\n" + table(header, rows))
    lines = {h: {row[0]: row[i] for row in rows} for i, h in enumerate(header) if i}
    if lines:
        code = {h: v for h, v in lines.items() if "pass@1" in h}
        ppl = {h[4:]: v for h, v in lines.items() if h.startswith("ppl ")}
        plt = _pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for ax, group, label, log in ((axes[0], code, "pass@1", False), (axes[1], ppl, "perplexity", True)):
            for name, values in group.items():
                xs = [v for v in values if values[v] is not None]
                ax.plot(xs, [values[v] for v in xs], marker="o", label=name)
            ax.set_ylabel(label)
            if log:
                ax.set_yscale("log")
            if group:
                ax.legend(fontsize=7)
            ax.tick_params(axis="x", labelrotation=15, labelsize=7)
        _finish(plt, fig, axes[-1], dirs.forgetting_png, "forgetting: code pass@1 and perplexity by variant")
    safety = {name: r["safety"] for name, r in all_results.items() if r.get("safety")}
    if safety:
        from .safety.report import plot_transfer, transfer_table

        write_text(dirs.safety_transfer_md, "# Safety transfer: refusal rate by language\n\n" + transfer_table(safety))
        plot_transfer(safety, dirs.safety_transfer_png)
    else:  # ours from an earlier evaluation with the safety suite: it no longer describes these results
        for stale in (dirs.safety_transfer_md, dirs.safety_transfer_png):
            stale.unlink(missing_ok=True)
    logger.info("reports: %s, %s", dirs.results_md.name, dirs.forgetting_md.name)
