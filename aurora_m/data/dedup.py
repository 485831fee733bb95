"""The dedup phase: MinHash near-duplicate removal over every source's cleaned documents together (within and
across sources), into ``work/dedup/<source>/``.
"""

from __future__ import annotations

from ..args import MixtureArguments
from ..layout import DatasetDir
from ..source_spec import SourceSpec
from .executors import _writer, run_pipeline


def _dedup(args: MixtureArguments, d: DatasetDir, specs: list[SourceSpec]) -> None:
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.utils.hashing import HashConfig

    from .clean import word_tokenizer
    from .intake import Tally

    # xxhash >= 4 hashes bytes only, and datatrove's minhash passes str: its sha1 path works with any xxhash
    config = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))
    mh = d.work / "minhash"
    # one task per cleaned file (the signature and filter stages must read the same files in the same tasks)
    tasks = max(1, len(list((d.work / "clean").glob("*/*.jsonl.gz"))))

    def reader():
        return JsonlReader(str(d.work / "clean"), glob_pattern="*/*.jsonl.gz", add_file_path=False)

    # one word splitter for every script (ja has no spaces), so duplicates across sources are found too
    words = word_tokenizer("generic")
    run_pipeline(
        [reader(), MinhashDedupSignature(str(mh / "signatures"), config=config, language=words)],
        d.logs / "dedup" / "signatures",
        tasks,
        args,
        "minhash-signatures",
    )
    run_pipeline(
        [MinhashDedupBuckets(str(mh / "signatures"), str(mh / "buckets"), config=config)],
        d.logs / "dedup" / "buckets",
        config.num_buckets,
        args,
        "minhash-buckets",
    )
    run_pipeline(
        [MinhashDedupCluster(str(mh / "buckets"), str(mh / "remove_ids"), config=config)],
        d.logs / "dedup" / "cluster",
        1,
        args,
        "minhash-cluster",
    )
    excl = _writer(d.removed, "${source}/minhash/${rank}.jsonl.gz") if args.keep_removed else None
    run_pipeline(
        [
            reader(),
            MinhashDedupFilter(str(mh / "remove_ids"), exclusion_writer=excl),
            Tally("minhash"),
            _writer(d.work / "dedup", "${source}/${rank}.jsonl.gz", args.intermediate_file_mb),
        ],
        d.logs / "dedup" / "filter",
        tasks,
        args,
        "minhash-filter",
    )
