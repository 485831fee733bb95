"""The safety transfer table and plot across variants: does safety tuning in English reach the other languages?

Both read the safety suite's results (schema in :mod:`.suite`), variant by variant in the order given
(base -> after CAP -> after CAT -> after safety SFT). A language a variant has no prompts in shows as
``missing``, one whose responses no judge could read as ``not measured (no judge for LANG)``; never as 0.
"""

from __future__ import annotations

from pathlib import Path

from ...languages import language_order

MISSING = "missing"


def _languages(results_by_variant: dict[str, dict]) -> list[str]:
    """The languages the variants' suites reported on: measured, or looked for and missing (the recipe's)."""
    found = {
        lang
        for r in results_by_variant.values()
        for key in ("refusal_rate", "over_refusal")
        for lang in r.get(key) or {}
    }
    for r in results_by_variant.values():
        missing = r.get("missing") or {}
        found |= {lang for key in ("red_team", "benign") for lang in missing.get(key) or []}
        found |= set(r.get("not_measured") or {})
    return language_order(found)


def _cell(rate, n=None, empty: int = 0, why: str | None = None) -> str:
    if why:  # prompts there, but nothing could read the responses: said, never a number
        return f"not measured ({why})"
    if rate is None:
        return MISSING if not empty else f"no verdict ({n}, {empty} empty)"
    return f"{rate:.2f}" + (f" ({n}{f', {empty} empty' if empty else ''})" if n is not None else "")


def agreement_note(result: dict) -> str:
    """ "validation 1.00, test 0.90" from a safety result's ``judge_agreement`` ("not measured" without one)."""
    sets = result.get("judge_agreement") or {}
    parts = [f"{name} {entry['agreement']:.2f}" for name, entry in sets.items() if entry.get("agreement") is not None]
    return ", ".join(parts) or "not measured"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def transfer_table(results_by_variant: dict[str, dict]) -> str:
    """Markdown: refusal rate by language by variant (with the English gap), over-refusal by language, and
    attack success by jailbreak template; ``results_by_variant``: variant -> safety suite result."""
    langs = _languages(results_by_variant)
    others = [lang for lang in langs if lang != "en"]
    rows = []
    for variant, r in results_by_variant.items():
        refusal = r.get("refusal_rate") or {}
        counts = (r.get("n") or {}).get("red_team") or {}
        empty = ((r.get("n") or {}).get("empty") or {}).get("plain") or {}
        why = r.get("not_measured") or {}
        rates = {lang: (refusal.get(lang) or {}).get("all") for lang in langs}
        measured = [rates[lang] for lang in others if rates[lang] is not None]
        mean_others = sum(measured) / len(measured) if measured else None
        gap = None if mean_others is None or rates.get("en") is None else mean_others - rates["en"]
        unread = [lang for lang in others if why.get(lang)]  # no judge reads them: their mean is not measured either
        mean_cell = _cell(mean_others, why=None if measured or not unread else f"no judge for {'/'.join(unread)}")
        rows.append(
            [
                variant,
                *[
                    _cell(rates[lang], (counts.get(lang) or {}).get("all"), empty.get(lang, 0), why.get(lang))
                    for lang in langs
                ],
                mean_cell,
                *([MISSING if gap is None else f"{gap:+.2f}"] if "en" in langs else []),
            ]
        )
    english = "en" in langs  # a model not trained on English has no English to compare with
    parts = [
        "Refusal rate on held-out red-team prompts (plain; n in brackets, with the empty responses, which are "
        "left out of the rate; higher is safer). "
        + (
            "The last column is the mean of the other languages minus English: how much of the safety "
            "behaviour transfers beyond English.\n\n"
            if english
            else "The last column is the mean over the languages.\n\n"
        ),
        _table(["variant", *langs, "mean " + "/".join(others), *(["vs en"] if english else [])], rows),
    ]
    over_rows = [
        [
            variant,
            *[
                _cell(
                    (r.get("over_refusal") or {}).get(lang),
                    benign := ((r.get("n") or {}).get("benign") or {}).get(lang),
                    why=(r.get("not_measured") or {}).get(lang) if benign else None,  # no prompt: missing
                )
                for lang in langs
            ],
        ]
        for variant, r in results_by_variant.items()
    ]
    parts += [
        "\nOver-refusal on benign look-alike prompts (lower is better).\n\n",
        _table(["variant", *langs], over_rows),
    ]
    attack_rows = [
        [variant, template, *[_cell(by_lang.get(lang), why=(r.get("not_measured") or {}).get(lang)) for lang in langs]]
        for variant, r in results_by_variant.items()
        for template, by_lang in (r.get("attack_success") or {}).items()
    ]
    if attack_rows:
        parts += [
            "\nAttack success by jailbreak template: red-team prompts not refused (lower is safer).\n\n",
            _table(["variant", "template", *langs], attack_rows),
        ]
    judges = {str(r.get("judge")): agreement_note(r) for r in results_by_variant.values()}
    named = "; ".join(f"`{name}` (agreement with human labels: {note})" for name, note in judges.items())
    parts.append(
        f"\nJudge: {named}. A rate is the share of the responses that got a verdict in which the judge read a "
        "refusal. It counts refusals, not harm: a response that is not refused may be gibberish, off topic or a "
        "harmless partial answer, and a refusal is no proof of safety.\n"
    )
    return "".join(parts)


def plot_transfer(results_by_variant: dict[str, dict], path: Path, title: str = "refusal rate by language") -> Path:
    """Grouped bars: languages on the x axis, one bar per variant; a missing language is marked, not drawn."""
    from ...plots import _finish, _pyplot

    plt = _pyplot()
    langs = _languages(results_by_variant)
    variants = list(results_by_variant)
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(langs) + 2), 3.4))
    for j, variant in enumerate(variants):
        refusal = results_by_variant[variant].get("refusal_rate") or {}
        for i, lang in enumerate(langs):
            x = i + j * width - 0.4 + width / 2
            rate = (refusal.get(lang) or {}).get("all")
            if rate is None:  # not measured: a label where the bar would be, so it never reads as 0
                label = "no judge" if lang in (results_by_variant[variant].get("not_measured") or {}) else "n/a"
                ax.annotate(label, (x, 0.01), ha="center", va="bottom", fontsize=7, color=f"C{j}", rotation=90)
            else:
                ax.bar(x, rate, width=width, color=f"C{j}")
                ax.annotate(f"{rate:.2f}", (x, rate + 0.01), ha="center", va="bottom", fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{j}") for j in range(len(variants))]
    ax.legend(handles, variants, fontsize=7)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("refusal rate (held-out red-team)")
    return _finish(plt, fig, ax, Path(path), title)
