"""Throughput of the pretrain data step next to the bare library work it wraps, measured in one run.

    python benchmarks/data_throughput.py [--mb 32] [--tasks 4] [--scale 10]

A corpus is generated on disk from the tiny recipe's documents (new documents made of sentences, or
for code of top-level blocks, sampled with a seeded RNG, so MinHash keeps them), ``--tasks`` files
per source. On the same files, each build in its own subprocess (so its peak memory is its own):

a. ours: ``build_corpus`` (read, filter, dedup, tokenize, mix) with data_workers=1, data_tasks=N;
b. hand-wired: datatrove's JsonlReader, the same filter objects in the same order, the same MinHash
   stages and DocumentTokenizer, each on a plain LocalPipelineExecutor (no tallies, report, index);
c. raw ``tokenizers``: ``encode_batch_fast`` of the same texts (the limit if cleaning were free);
d. ours with data_workers=2 (same tasks): the scaling figure;
e. ours (data_workers=2) again on this corpus and on one ``--scale`` times larger, with the same token
   budget: peak memory, the largest sum of PSS over the build process and its children, sampled (not in
   the timed runs a-d: reading PSS costs CPU time).

Every throughput is the corpus' token count (raw tokenizer, EOS included) over the seconds of the
build (imports, a fixed cost per process, excluded and printed); per-step seconds come from datatrove's
stats.json. Ends with the lines
``ratio_vs_datatrove``, ``ratio_vs_tokenizer``, ``scaling_1_to_2_workers``, ``memory_10x_over_1x``.
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
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# every build, ours and hand-wired, one core per worker (the data step's own rule): a tokenizer's
# threads would otherwise give one build more cores than the other
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "aurora-m-tiny" / "data"
LANGS = ("en", "fi", "hi", "ja", "vi", "code")
SEQ_LENGTH = 128
HOLDOUT = 0.1  # as the tiny recipe: the hash split runs in both builds
TOKEN_BATCH = 1000
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
    where the hand-wired build's filters look (ours sets them from the recipe).
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
    )
    return model_args, mix_args


def run_ours(job: dict) -> None:
    from aurora_m.data.corpus import build_corpus

    model_args, mix_args = _args(job)
    build_corpus(model_args, mix_args, job["out"])


def run_hand_wired(job: dict) -> None:
    """The datatrove components of ``build_corpus`` wired by hand: nothing of ours between them but the filters."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from aurora_m.data.clean import (
        CodeQuality,
        FillInTheMiddle,
        LanguageId,
        PiiAnonymizer,
        SymbolDigitRatio,
        ToxicWords,
        quality_filters,
        word_tokenizer,
    )
    from aurora_m.data.intake import TooLong
    from aurora_m.data.tokenize_shards import TOKENIZE_BATCH
    from aurora_m.source_spec import source_specs

    _, args = _args(job)
    out = Path(job["out"])
    tokenizer_file = job["tokenizer_file"]
    eos = json.loads((Path(tokenizer_file).parent / "tokenizer_config.json").read_text())["eos_token"]
    if isinstance(eos, dict):
        eos = eos["content"]
    work, logs = out / "work", out / "logs"

    def run(pipeline, phase, tasks):
        LocalPipelineExecutor(
            pipeline=pipeline,
            logging_dir=str(logs / phase),
            tasks=tasks,
            workers=max(1, min(args.data_workers, tasks)),
            start_method="forkserver",
        ).run()

    def writer(folder, filename, max_mb=None):  # the same size cap on intermediate files as ours
        return JsonlWriter(
            str(folder),
            output_filename=filename,
            compression="gzip",
            max_file_size=int(max_mb * 2**20) if max_mb else -1,
        )

    specs = source_specs(args.mixture, "mixture")
    routes = {s.lang: s.name for s in specs if s.lang != "code"}
    for spec in specs:
        name, origin = spec.name, f"{spec.name}_${{rank}}.jsonl.gz"

        def removed(step, name=name, origin=origin):
            return writer(out / "removed" / name / step, origin) if args.keep_removed else None

        steps = [
            JsonlReader(spec.path, glob_pattern="*.jsonl", add_file_path=False),
            TooLong(args.max_doc_chars, removed("length_cap")),
            LambdaFilter(functools.partial(in_train, spec.holdout_fraction)),
        ]
        if spec.lang == "code":
            steps.append(CodeQuality(exclusion_writer=removed("code_quality")))
        else:
            steps.append(
                LanguageId(
                    spec.lang,
                    dict(args.language_id_min_score),
                    args.mislabelled,
                    routes,
                    exclusion_writer=removed("language_id"),
                )
            )
            steps += quality_filters(list(args.quality_filters), dict(args.quality_overrides), removed)
            if args.max_symbol_digit_ratio is not None:
                steps.append(SymbolDigitRatio(args.max_symbol_digit_ratio, exclusion_writer=removed("symbol_digit")))
            if args.toxicity_filter:
                steps.append(ToxicWords(exclusion_writer=removed("toxic_words")))
        if args.pii_anonymise:
            steps.append(PiiAnonymizer())
        steps.append(writer(work / "clean", f"${{source}}/{origin}", args.intermediate_file_mb))
        run(steps, f"clean/{name}", args.data_tasks)

    config = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))
    mh = work / "minhash"

    def clean_reader():
        return JsonlReader(str(work / "clean"), glob_pattern="*/*.jsonl.gz", add_file_path=False)

    tasks = max(1, len(list((work / "clean").glob("*/*.jsonl.gz"))))
    run(
        [
            clean_reader(),
            MinhashDedupSignature(str(mh / "signatures"), config=config, language=word_tokenizer("generic")),
        ],
        "dedup/signatures",
        tasks,
    )
    run(
        [MinhashDedupBuckets(str(mh / "signatures"), str(mh / "buckets"), config=config)],
        "dedup/buckets",
        config.num_buckets,
    )
    run([MinhashDedupCluster(str(mh / "buckets"), str(mh / "remove_ids"), config=config)], "dedup/cluster", 1)
    excl = writer(out / "removed", "${source}/minhash/${rank}.jsonl.gz") if args.keep_removed else None
    run(
        [
            clean_reader(),
            MinhashDedupFilter(str(mh / "remove_ids"), exclusion_writer=excl),
            writer(work / "dedup", "${source}/${rank}.jsonl.gz", args.intermediate_file_mb),
        ],
        "dedup/filter",
        tasks,
    )

    for spec in specs:
        folder = work / "dedup" / spec.name
        steps = [JsonlReader(str(folder), glob_pattern="*.jsonl.gz", add_file_path=False)]
        if spec.lang == "code" and args.fim_rate > 0:
            steps.append(FillInTheMiddle(args.fim_rate, args.fim_spm_rate, seed=args.mixture_seed))
        steps.append(
            DocumentTokenizer(
                str(out / "tokens" / spec.name),
                tokenizer_file,
                eos_token=eos,
                local_working_dir=str(work / "tokenize" / spec.name),
                seed=args.mixture_seed,
                shuffle_documents=True,
                batch_size=TOKENIZE_BATCH,
            )
        )
        run(steps, f"tokenize/{spec.name}", max(1, len(list(folder.glob("*.jsonl.gz")))))


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
    (run_ours if job["kind"] == "ours" else run_hand_wired)(job)
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
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(job_file)], stdout=fh, stderr=fh, cwd=ROOT)
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
    parser.add_argument("--mb", type=float, default=32.0, help="corpus size in MB of text (all sources together)")
    parser.add_argument("--tasks", type=int, default=4, help="datatrove tasks per source (= files per source)")
    parser.add_argument(
        "--file-mb",
        type=float,
        default=0.5,
        help="intermediate_file_mb of both builds: small here so that 1x and 10x are both in the "
        "many-files regime of a real corpus (64 MB files of a 1 TB corpus)",
    )
    parser.add_argument("--scale", type=int, default=10, help="size of the memory run's corpus, in corpora")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    parser.add_argument("--workdir", default=None, help="keep the corpora and builds here (default: a temp dir)")
    parser.add_argument("--top-steps", type=int, default=8, help="most expensive datatrove steps to list")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one build
    return parser


def _report_steps(label: str, seconds: dict[str, float], top: int) -> None:
    for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {label} step {s:8.2f} s  {name}")


def main(argv: list[str] | None = None) -> None:
    from aurora_m.layout import DatasetDir

    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        logger.info("generating %.1f MB and %.1f MB corpora", args.mb, args.mb * args.scale)
        small = make_corpus(tmp / "corpus-1x", args.mb, args.tasks, args.seed)
        large = make_corpus(tmp / "corpus-large", args.mb * args.scale, args.tasks, args.seed + 1)

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
        logger.info("a. ours, 1 worker")
        ours1 = build("ours", job(small, "ours-w1", 1, est_budget), tmp)
        tokenizer_file = str(tmp / "ours-w1" / "tokenizer" / "tokenizer.json")
        logger.info("b. hand-wired datatrove, 1 worker")
        hand = build("hand", job(small, "hand-w1", 1, est_budget, tokenizer_file), tmp)
        logger.info("c. raw tokenizer")
        tokens, tok_s = raw_tokenizer(tokenizer_file, small)
        logger.info("d. ours, 2 workers")
        ours2 = build("ours", job(small, "ours-w2", 2, est_budget), tmp)
        logger.info("e. ours, 2 workers, peak memory at 1x and at %dx the corpus, same budget", args.scale)
        mem_small = build("ours", job(small, "ours-mem-1x", 2, est_budget), tmp, memory=True)
        mem_large = build("ours", job(large, "ours-mem-big", 2, est_budget), tmp, memory=True)

        mixture = json.loads(DatasetDir(tmp / "ours-w1").mixture_json.read_text())
        docs = sum(1 for _ in corpus_texts(small))
        print(
            f"corpus: {args.mb:.1f} MB, {docs:,} documents, {tokens:,} tokens (raw tokenizer, EOS included), "
            f"{len(LANGS)} sources x {args.tasks} files; budget {mixture['tokens']:,} tokens"
        )
        for label, s in (
            ("ours, 1 worker", ours1["seconds"]),
            ("hand-wired datatrove", hand["seconds"]),
            ("raw tokenizer", tok_s),
            ("ours, 2 workers", ours2["seconds"]),
        ):
            print(f"{label:22s}: {s:8.2f} s  {tokens / s:12,.0f} tokens/s")
        print(
            f"{'ours, 2 workers, ' + str(args.scale) + 'x':22s}: {mem_large['seconds']:8.2f} s  "
            f"(x{mem_large['seconds'] / mem_small['seconds']:.1f} the time of 1x, both sampling memory)"
        )
        for label, r in (("1x", mem_small), (f"{args.scale}x", mem_large)):
            print(
                f"peak memory ours {label:4s} (2 workers): {r['peak_tree_mb']:8.1f} MB (PSS, process tree; "
                f"largest process then {r['at_peak'][0][0]:.1f} MB, {r['at_peak'][0][1]})"
            )
        print(
            f"imports (not timed): ours {ours1['import_seconds']:.1f} s, hand-wired {hand['import_seconds']:.1f} s; "
            f"whole processes: ours {ours1['process_seconds']:.1f} s, hand-wired {hand['process_seconds']:.1f} s"
        )
        _report_steps("ours", step_seconds(tmp / "ours-w1" / "logs"), args.top_steps)
        _report_steps("hand", step_seconds(tmp / "hand-w1" / "logs"), args.top_steps)
        print(f"ratio_vs_datatrove: {hand['seconds'] / ours1['seconds']:.3f}")
        print(f"ratio_vs_tokenizer: {tok_s / ours1['seconds']:.4f}")
        print(f"scaling_1_to_2_workers: {ours1['seconds'] / ours2['seconds']:.3f}")
        print(f"memory_10x_over_1x: {mem_large['peak_tree_mb'] / mem_small['peak_tree_mb']:.3f}")


if __name__ == "__main__":
    main()
