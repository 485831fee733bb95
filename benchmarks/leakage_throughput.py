"""Throughput of the test-prompt leakage check next to a bare substring loop, measured in one run.

    python benchmarks/leakage_throughput.py [--mb 8] [--prompts 5000] [--seed 0]

Every training stage's data step checks each training text against the held-out test prompts (the red-team
set's ~5,000, the paper's size). On the same synthetic corpus and the same prompts, in turn:

a. ours: ``LeakageIndex.matches`` on every document (normalisation, exact copies anywhere, near duplicates);
b. bare: ``prompt in text`` for every prompt, on the raw text: the plainest check there is (it finds only
   verbatim copies: no case, punctuation or spacing changes, no near duplicates);
c. ``normalize`` alone, the part of (a) every document pays whatever the prompts.

The corpus is documents made of sentences of the tiny recipe's en/fi/hi/ja/vi texts (seeded RNG), plus short
instruction-like documents (one or two sentences: the texts the near-duplicate path compares), plus planted
leaks: verbatim copies of prompts inside documents, and rewrites of prompts (case, punctuation, one word added).
The prompts are the tiny red-team instructions and word-shuffles of them, up to ``--prompts``. Before any
timing, both checks must find every verbatim plant, and ours every rewrite.

Ends with ``mb_per_s`` (ours), ``ratio_vs_bare`` (ours' MB/s over bare's: above 1 is faster) and
``core_hours_cap`` (ours, one core, for 377B tokens ~ 1.5 TB of text, the CAP corpus).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aurora_m.safety.leakage import LeakageIndex, normalize  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "recipes" / "aurora-m-tiny" / "data"
LANGS = ("en", "fi", "hi", "ja", "vi")
CAP_BYTES = 1.5e12  # 377B tokens of CAP text, ~4 bytes a token
PLANT_EVERY = 100  # one planted leak every this many documents
# a sentence ends in . ? ! (spaced scripts), । (Hindi) or 。！？ (Japanese, no space after)
_SENTENCE_END = re.compile(r"(?<=[.!?।])\s+|(?<=[。！？])")

logger = logging.getLogger("leakage_throughput")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=8.0, help="corpus size (UTF-8 MB of text)")
    parser.add_argument("--prompts", type=int, default=5000, help="test prompts in the index")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _read(name: str, field: str) -> list[str]:
    return [json.loads(line)[field] for line in (TINY / name).read_text(encoding="utf-8").splitlines() if line]


def make_prompts(count: int, rng: random.Random) -> list[str]:
    """The tiny red-team instructions, then word-shuffles of them (12-20 words) until ``count`` distinct ones."""
    prompts = list(dict.fromkeys(_read("redteam.jsonl", "instruction")))[:count]
    words = [w for p in prompts for w in p.split() if len(w) <= 20]  # not whole Japanese sentences
    seen = {normalize(p) for p in prompts}
    while len(prompts) < count:
        candidate = " ".join(rng.choice(words) for _ in range(rng.randint(12, 20)))
        if normalize(candidate) not in seen:
            seen.add(normalize(candidate))
            prompts.append(candidate)
    return prompts


def _rewrite(prompt: str, rng: random.Random) -> str:
    """A near duplicate: changed case and punctuation, one word added (never recreating the prompt itself)."""
    words = prompt.upper().rstrip("?.!").split()
    while True:
        at = rng.randrange(len(words) + 1)
        text = " ".join(words[:at] + ["NOW"] + words[at:]) + " !!"
        if f" {normalize(prompt)} " not in f" {normalize(text)} ":
            return text


def make_corpus(mb: float, prompts: list[str], rng: random.Random) -> tuple[list[str], dict[int, tuple[str, int]]]:
    """Documents of ``mb`` MB, and the planted leaks: document index -> (kind, prompt index)."""
    sentences = {
        lang: [s.strip() for t in _read(f"{lang}.jsonl", "text") for s in _SENTENCE_END.split(t) if s.strip()]
        for lang in LANGS
    }
    docs, planted, size = [], {}, 0
    while size < mb * 2**20:
        lang = rng.choice(LANGS)
        short = rng.random() < 0.3  # instruction-like texts: the ones near duplicates are looked for in
        parts = rng.sample(sentences[lang], rng.randint(1, 2) if short else rng.randint(4, 12))
        doc = ("" if lang == "ja" else " ").join(parts)
        if len(docs) % PLANT_EVERY == PLANT_EVERY - 1:
            k = rng.randrange(len(prompts))
            if len(planted) % 2:
                doc, planted[len(docs)] = _rewrite(prompts[k], rng), ("near", k)
            else:
                doc, planted[len(docs)] = f"{doc} {prompts[k]} {doc}", ("verbatim", k)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs, planted


def bare(docs: list[str], prompts: list[str]) -> list[list[int]]:
    return [[k for k, p in enumerate(prompts) if p in doc] for doc in docs]


def ours(docs: list[str], index: LeakageIndex) -> list[list[str]]:
    return [[m.prompt_id for m in index.matches(doc)] for doc in docs]


def check_plants(planted, docs, prompts, index) -> str:
    """Both checks must find what was planted, else a fast figure would measure a broken check."""
    for d, (kind, k) in planted.items():
        found = {m.prompt_id: m.kind for m in index.matches(docs[d])}
        if found.get(str(k)) != ("exact" if kind == "verbatim" else "near"):
            raise SystemExit(f"ours missed the {kind} plant of prompt {k} in document {d}: {found}")
        if kind == "verbatim" and prompts[k] not in docs[d]:
            raise SystemExit(f"bare missed the verbatim plant of prompt {k} in document {d}")
    verbatim = sum(kind == "verbatim" for kind, _ in planted.values())
    return f"{verbatim} verbatim (both found all), {len(planted) - verbatim} rewritten (ours found all)"


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    rng = random.Random(args.seed)
    prompts = make_prompts(args.prompts, rng)
    docs, planted = make_corpus(args.mb, prompts, rng)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 2**20
    tracemalloc.start()
    index = LeakageIndex([(str(k), p) for k, p in enumerate(prompts)])
    index_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    plants = check_plants(planted, docs, prompts, index)

    logger.info("timing: %d documents, %.1f MB, %d prompts", len(docs), mb, len(prompts))
    t_norm, _ = timed(lambda: [normalize(d) for d in docs])
    t_ours, found = timed(ours, docs, index)
    t_bare, hits = timed(bare, docs, prompts)
    rate = {"ours": mb / t_ours, "bare": mb / t_bare, "normalize": mb / t_norm}
    print(
        f"corpus: {mb:.2f} MB, {len(docs):,} documents ({'/'.join(LANGS)}); prompts: {len(prompts):,}; "
        f"index: {index_mb:.1f} MB (tracemalloc)"
    )
    print(f"planted leaks: {plants}; leaking documents: ours {sum(map(bool, found))}, bare {sum(map(bool, hits))}")
    for name, seconds in (("ours", t_ours), ("bare", t_bare), ("normalize", t_norm)):
        hours = CAP_BYTES / (rate[name] * 2**20) / 3600
        print(f"{name:9s}: {seconds:8.2f} s  {rate[name]:8.2f} MB/s  -> {hours:10,.0f} core-hours for ~1.5 TB")
    print(f"mb_per_s: {rate['ours']:.3f}")
    print(f"ratio_vs_bare: {rate['ours'] / rate['bare']:.3f}")
    print(f"core_hours_cap: {CAP_BYTES / (rate['ours'] * 2**20) / 3600:.1f}")


if __name__ == "__main__":
    main()
