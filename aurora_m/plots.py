"""PNG plots for run folders and model cards: the mixture, the loss curve, per-language perplexity."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path: Path, title: str) -> Path:
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_mixture(report: dict, path: Path, title: str) -> Path:
    plt = _pyplot()
    sources = report["sources"]
    names = [s["name"] for s in sources]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3.2))
    ax.bar([i - 0.2 for i in x], [s["target_share"] for s in sources], width=0.4, label="target (weight)")
    ax.bar([i + 0.2 for i in x], [s["share"] for s in sources], width=0.4, label="drawn (tokens)")
    for i, s in enumerate(sources):
        ax.annotate(f"x{s['epochs']:.1f}", (i + 0.2, s["share"]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("share of tokens")
    ax.legend(fontsize=8)
    return _finish(
        plt, fig, ax, path, f"{title}: {report['tokens']:,} tokens in {report['sequences']:,} x {report['seq_length']}"
    )


def plot_loss(log_history: list[dict], path: Path, title: str) -> Path:
    plt = _pyplot()
    steps = [e["step"] for e in log_history if "loss" in e]
    losses = [e["loss"] for e in log_history if "loss" in e]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, losses, marker=".", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    return _finish(plt, fig, ax, path, title)


def plot_perplexity(results: dict[str, dict], path: Path, title: str) -> Path:
    """``results``: variant -> {language: perplexity}."""
    plt = _pyplot()
    variants = list(results)
    languages = sorted({lang for r in results.values() for lang in r})
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(5, 1.0 * len(languages) + 2), 3.2))
    for j, variant in enumerate(variants):
        ax.bar(
            [i + j * width - 0.4 + width / 2 for i in range(len(languages))],
            [results[variant].get(lang, 0) for lang in languages],
            width=width,
            label=variant,
        )
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yscale("log")
    ax.set_ylabel("perplexity (log scale)")
    ax.legend(fontsize=7)
    return _finish(plt, fig, ax, path, title)


def plot_curves(log_history: list[dict], path: Path, title: str) -> Path | None:
    """Training loss, learning rate, held-out loss per language (``eval_<lang>_loss``) and the forgetting
    probes' ratios to their baseline, over steps; None when the history holds nothing to draw yet.

    Redrawn during training, so written under a temporary name and renamed: a reader never sees half a file.
    """
    import re

    def series(key: str) -> tuple[list, list]:
        points = [(e["step"], e[key]) for e in log_history if isinstance(e.get(key), (int, float))]
        return [p[0] for p in points], [p[1] for p in points]

    keys = dict.fromkeys(k for e in log_history for k in e)  # first-seen order: the eval sets' order
    heldout = [m.group(1) for k in keys if (m := re.fullmatch(r"eval_(.+)_loss", k))]
    ratios = sorted(k for k in keys if k.startswith("forgetting/") and k.endswith("_ratio"))
    panels = [
        (name, draw)
        for name, draw in (
            ("training loss", ["loss"]),
            ("learning rate", ["learning_rate"]),
            ("held-out loss", [f"eval_{lang}_loss" for lang in heldout]),
            ("forgetting (x baseline)", ratios),
        )
        if any(series(k)[0] for k in draw)
    ]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.2), squeeze=False)
    for ax, (name, draw) in zip(axes[0], panels):
        for key in draw:
            steps, values = series(key)
            label = key.removeprefix("eval_").removesuffix("_loss").removeprefix("forgetting/").removesuffix("_ratio")
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, linewidth=1, label=label)
        if name == "forgetting (x baseline)":
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        if name in ("held-out loss", "forgetting (x baseline)"):
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_file(path) as partial:
        fig.savefig(partial, dpi=100, format="png")
    plt.close(fig)
    return path
