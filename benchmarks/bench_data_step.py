"""Cost of the data step next to the bare library work it wraps, measured side by side in one run.

    python benchmarks/bench_data_step.py [--copies 20]

"bare" reads the same jsonl files and tokenizes every document with the fast tokenizer in
batches (the unavoidable work); "ours" is ``build_pretrain_dataset`` on the same files with a
budget of every token once: reading, hash split, mixing, packing, saving, the mixture report and
plot. Prints both times and the ratio ours / bare.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("en", "fi", "hi", "ja", "vi", "code")


def make_corpus(dest: Path, copies: int) -> list[Path]:
    files = []
    for lang in LANGS:
        rows = (ROOT / "recipes/aurora-m-tiny/data" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        path = dest / f"{lang}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for c in range(copies):  # copies differ by a suffix so the hash split sees distinct documents
                for row in rows:
                    doc = json.loads(row)
                    doc["text"] = f"{doc['text']} ({c})"
                    fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
        files.append(path)
    return files


def bare(files, tokenizer) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = 0
    for path in files:
        texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
        for i in range(0, len(texts), 1000):
            tokens += sum(len(ids) + 1 for ids in tokenizer(texts[i:i + 1000], add_special_tokens=False)["input_ids"])
    return time.perf_counter() - start, tokens


def ours(files, tokens: int, out: Path) -> float:
    from aurora_m.args import MixtureArguments, ModelArguments
    from aurora_m.data.build import build_pretrain_dataset

    tok_files = [str(p) for p in sorted((ROOT / "recipes/aurora-m-tiny/data").glob("*.jsonl"))]
    model_args = ModelArguments(tokenizer_train_files=tok_files)
    mixture = [{"name": p.stem, "path": str(p), "weight": 1.0} for p in files]
    mix_args = MixtureArguments(mixture=mixture, seq_length=128, train_tokens=tokens)
    start = time.perf_counter()
    build_pretrain_dataset(model_args, mix_args, out)
    return time.perf_counter() - start


def main(copies: int) -> None:
    from aurora_m.tokenizer import cached_tokenizer

    tok_files = [str(p) for p in sorted((ROOT / "recipes/aurora-m-tiny/data").glob("*.jsonl"))]
    tokenizer = cached_tokenizer(tok_files, 4096)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_corpus(Path(tmp), copies)
        bare_s, tokens = bare(files, tokenizer)
        ours_s = ours(files, tokens, Path(tmp) / "out")
    docs = copies * 64 * len(LANGS)
    print(f"{docs} documents, {tokens:,} tokens")
    print(f"bare tokenize : {bare_s:6.2f} s  ({tokens / bare_s:,.0f} tokens/s)")
    print(f"data step     : {ours_s:6.2f} s  ({tokens / ours_s:,.0f} tokens/s)")
    print(f"ratio ours/bare: {ours_s / bare_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20, help="copies of the tiny corpus")
    main(parser.parse_args().copies)
