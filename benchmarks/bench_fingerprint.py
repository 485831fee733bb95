"""Cost of fingerprinting a step's input files next to hashing them with a bare loop, in one run.

    python benchmarks/bench_fingerprint.py [--mb 256]

"bare" reads the file in 1 MB chunks into hashlib.blake2b (the unavoidable work of knowing its
content); "ours, first" is FileHashes.digest on the same file (hash + cache entry); "ours, again"
is the second call, which the (size, mtime) cache answers without reading. Prints times and ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from aurora_m.pipeline.fingerprint import FileHashes


def bare(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corpus.jsonl"
        with data.open("wb") as fh:
            block = b'{"text": "' + b"lorem ipsum dolor sit amet " * 4000 + b'"}\n'
            for _ in range(mb * (1 << 20) // len(block)):
                fh.write(block)
        size = data.stat().st_size
        bare(data)  # warm the page cache for both
        t0 = time.perf_counter()
        reference = bare(data)
        t_bare = time.perf_counter() - t0
        hashes = FileHashes(Path(tmp) / "cache.json")
        t0 = time.perf_counter()
        first = hashes.digest(data)
        t_first = time.perf_counter() - t0
        hashes.save()
        again_hashes = FileHashes(Path(tmp) / "cache.json")
        t0 = time.perf_counter()
        again = again_hashes.digest(data)
        t_again = time.perf_counter() - t0
        assert first == again == reference
        print(f"{size / 2**20:.0f} MB file")
        print(f"bare blake2b      : {t_bare:8.3f} s  ({size / t_bare / 2**30:.2f} GB/s)")
        print(f"ours, first run   : {t_first:8.3f} s  (ratio ours/bare {t_first / t_bare:.2f})")
        print(f"ours, cached run  : {t_again * 1e3:8.3f} ms (ratio ours/bare {t_again / t_bare:.5f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    main(parser.parse_args().mb)
