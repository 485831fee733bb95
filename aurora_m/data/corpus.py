"""A pretraining stage's corpus: datatrove cleans, deduplicates and tokenizes; the mixer draws the stream.

The build, in order (each phase a datatrove executor: local processes, or Slurm jobs):

1. **clean**, one pipeline per source: read (counted) -> length cap -> count tokens -> held-out
   split -> language id -> per-language quality -> symbol/digit ratio -> toxic words -> PII
   anonymised -> ``work/clean/<source>/``. Code gets code filters instead of the prose ones;
   instruction data (red-team pairs) is curated, so it gets only the cap, the split and PII.
2. **dedup**: MinHash over every source's cleaned documents together (within and across sources).
3. **tokenize**, one per source: fill-in-the-middle for code, then datatrove's tokenizer writes
   shuffled ``.ds`` shards (uint16 ids for vocabularies up to 65,536) into ``tokens/<source>/``.
4. **mix**: the table (source, share, tokens, epochs) from the stage's budget, and a seeded index
   of windows over the shards: the training stream. Its position is a number (a row of the index).
5. **held-out windows** (packed after tokenizing): cleaning copies each task's first held-out
   documents (``heldout_blocks`` windows' worth at most), packed per language into
   ``heldout/<lang>.npy``: what the training run evaluates (held-out loss, the forgetting monitor).

A ``Tally`` after every filter counts documents and tokens per source, so ``filter_report.json``
says what each filter removed, per source and per language; removed documents are kept under
``removed/<source>/<filter>/``. The build happens in a hidden ``.data.partial`` folder, resumable
after a kill (datatrove skips finished tasks) only for the same keys and input files, and becomes
the stage's data folder in one rename. Memory does not grow with the corpus: documents stream
through every phase; the index is written chunk by chunk.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..args import MixtureArguments, ModelArguments
from ..errors import RecipeError
from ..io import read_json_or_none, replace_dir, write_json
from ..layout import DatasetDir
from ..plots import plot_mixture
from ..source_spec import LANGUAGES, PROSE_LANGUAGES, SourceSpec, source_specs
from ..tokenizer import load_tokenizer
from .sources import heldout_rule

logger = logging.getLogger(__name__)

QUIET_WAIT_S = 30  # Slurm: how often to look for finished tasks
TOKENIZE_BATCH = 1000


# ----------------------------------------------------------------------------- executors
def _quiet_local_executor():
    from datatrove.executor import LocalPipelineExecutor

    class QuietLocalExecutor(LocalPipelineExecutor):
        """datatrove's local executor with its console logging kept in the task logs.

        A user mistake found in a worker (a bad parquet file) then reaches the CLI as one line,
        not as loguru's traceback; everything stays in ``logs/<phase>/<source>/logs/``.
        """

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            # loguru keeps the stream it was given for the life of the process: it must stay open
            with contextlib.redirect_stderr(_devnull()):
                return super()._run_for_rank(rank, local_rank, node_rank)

    return QuietLocalExecutor


@functools.cache
def _devnull():
    return open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process, on purpose


def run_pipeline(
    pipeline: list, logging_dir: Path, tasks: int, args: MixtureArguments, job_name: str, workers: int | None = None
) -> None:
    """Run one datatrove pipeline to completion (finished tasks of a killed build are skipped)."""
    workers = max(1, min(workers or args.data_workers, tasks))
    if args.data_executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        executor = SlurmPipelineExecutor(
            pipeline=pipeline,
            logging_dir=str(logging_dir),
            tasks=tasks,
            workers=workers,
            job_name=job_name,
            time=args.slurm_time,
            partition=args.slurm_partition,
            cpus_per_task=args.slurm_cpus_per_task,
            mem_per_cpu_gb=args.slurm_mem_per_cpu_gb,
        )
        executor.run()
        _wait_for_tasks(executor, job_name)
        return
    if workers > 1:
        _prepare_worker_pool()
    # one core per worker, also for one worker: data_workers N means N cores (a tokenizer's own threads
    # would otherwise fight the other workers, or make one worker look like two)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _no_forked_helpers()
    executor = _quiet_local_executor()(
        pipeline=pipeline, logging_dir=str(logging_dir), tasks=tasks, workers=workers, start_method="forkserver"
    )
    executor.run()
    missing = executor.get_incomplete_ranks(range(tasks))
    if missing:
        raise RuntimeError(f"{job_name}: tasks {missing} did not complete; see {logging_dir}/logs")


@functools.cache
def _no_forked_helpers() -> None:
    """datatrove starts a ``multiprocess.Manager`` server for every executor, by fork unless told otherwise:
    a forked server inherits this process's lock descriptors and, when this process is killed, lives on
    holding the run's locks (the next run is then refused). Started from the fork server it inherits nothing."""
    import multiprocess

    multiprocess.set_start_method("forkserver", force=True)


@functools.cache
def _prepare_worker_pool() -> None:
    """The heavy imports done once in the fork server rather than again in every worker of every phase."""
    import multiprocess

    multiprocess.get_context("forkserver").set_forkserver_preload(
        [
            "datatrove.pipeline.readers",
            "datatrove.pipeline.filters",
            "datatrove.pipeline.dedup",
            "datatrove.pipeline.tokens",
            "aurora_m.data.intake",
            "aurora_m.data.clean",
            "tokenizers",
        ]
    )


def _wait_for_tasks(executor, job_name: str) -> None:
    """Slurm jobs run elsewhere: the mixer starts when every task has written its completion file."""
    while missing := executor.get_incomplete_ranks(range(executor.world_size)):
        logger.info("%s: waiting for %d Slurm task(s)", job_name, len(missing))
        time.sleep(QUIET_WAIT_S)


# ----------------------------------------------------------------------------- the build's identity
def _input_stamp(specs: list[SourceSpec]) -> dict:
    """Size and mtime of every local input file: a partial build is resumed only over the same files."""
    from .intake import local_files

    stamp = {}
    for spec in specs:
        if spec.path is not None:
            for f in local_files(spec):
                st = f.stat()
                stamp[str(f)] = [st.st_size, st.st_mtime_ns]
    return stamp


def _input_sizes(specs: list[SourceSpec]) -> dict[str, int]:
    from .intake import local_files

    return {s.name: sum(f.stat().st_size for f in local_files(s)) if s.path is not None else 0 for s in specs}


def _build_identity(model_args: ModelArguments, mix_args: MixtureArguments, specs: list[SourceSpec]) -> dict:
    keys = {k: v for k, v in asdict(mix_args).items() if k not in ("dataset_dir", *mix_args.TRAIN_ONLY_KEYS)}
    tok = {
        k: getattr(model_args, k)
        for k in ("tokenizer_name_or_path", "tokenizer_train_files", "tokenizer_vocab_size", "model_name_or_path")
    }
    tokenizer_files = {}
    for f in model_args.tokenizer_train_files:
        st = Path(f).stat()
        tokenizer_files[str(f)] = [st.st_size, st.st_mtime_ns]
    ident = {"data_keys": keys, "tokenizer": tok, "tokenizer_files": tokenizer_files, "inputs": _input_stamp(specs)}
    canonical = json.dumps(ident, sort_keys=True, default=str).encode()
    ident["digest"] = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return ident


@contextlib.contextmanager
def _build_lock(partial: DatasetDir, config_file):
    partial.root.mkdir(parents=True, exist_ok=True)
    fh = open(partial.lock, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RecipeError(
            config_file, "dataset_dir", f"another process is building {partial.root}; one build per data folder"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _foreign(folder: DatasetDir) -> list[str]:
    """Names in a data folder (or its partial build) that a build does not write: never deleted by us."""
    ours = {
        p.name
        for p in (
            folder.train,
            folder.tokenizer,
            folder.mixture_json,
            folder.mixture_png,
            folder.sources_json,
            folder.filter_report_json,
            folder.index,
            folder.tokens,
            folder.removed,
            folder.logs,
            folder.work,
            folder.build_json,
            folder.lock,
            folder.heldout,
        )
    }
    ours.add(folder.index.name + ".json")  # the index's own description (stream.index_meta_path)
    return sorted(p.name for p in folder.root.iterdir() if p.name not in ours) if folder.root.is_dir() else []


def _refuse_foreign(folder: DatasetDir, config_file) -> None:
    if foreign := _foreign(folder):
        raise RecipeError(
            folder.root,
            "dataset_dir",
            f"only files a data step writes; it also holds files "
            f"aurora-m did not write ({', '.join(foreign[:3])}): move "
            "them out (aurora-m never deletes them), then run again",
        )


def _start_or_resume(partial: DatasetDir, ident: dict) -> None:
    previous = read_json_or_none(partial.build_json)
    if previous is not None and previous.get("digest") != ident["digest"]:
        logger.info("the partial build in %s was for other keys or input files: starting over", partial.root)
        for child in partial.root.iterdir():  # ours only: _refuse_foreign ran first
            if child != partial.lock:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif previous is not None:
        logger.info("resuming the partial build in %s (finished datatrove tasks are skipped)", partial.root)
    elif any(c != partial.lock for c in partial.root.iterdir()):
        raise RecipeError(
            partial.root,
            "dataset_dir",
            "an empty folder for the build (this one holds files aurora-m did not write: move them out)",
        )
    write_json(partial.build_json, ident)


# ----------------------------------------------------------------------------- phases
def _writer(folder: Path, filename: str, max_mb: float | None = None):
    from datatrove.pipeline.writers import JsonlWriter

    max_bytes = int(max_mb * 2**20) if max_mb else -1
    return JsonlWriter(str(folder), output_filename=filename, compression="gzip", max_file_size=max_bytes)


def _clean_pipeline(
    spec: SourceSpec,
    args: MixtureArguments,
    d: DatasetDir,
    tokenizer_file: str,
    routes: dict[str, str],
    config_file,
    prompts: list,
) -> list:
    from .clean import CodeQuality, LanguageId, PiiAnonymizer, SymbolDigitRatio, ToxicWords, quality_filters
    from .contamination import ContaminationCheck
    from .intake import Counted, HeldOut, Tally, TooLong, source_reader

    name = spec.name
    origin = f"{name}_${{rank}}.jsonl.gz"

    def removed(step: str):
        return _writer(d.removed_by(name, step), origin) if args.keep_removed else None

    steps: list = [
        source_reader(spec),
        TooLong(args.max_doc_chars, removed("length_cap")),
        Tally("length_cap", progress=True),
    ]
    if args.heldout_blocks > 0 and spec.holdout_fraction > 0 and _monitored(spec):
        steps.append(
            HeldOutSample(
                spec.holdout_fraction,
                args.heldout_blocks * args.seq_length,
                tokenizer_file,
                _writer(d.heldout_docs(name), origin),
                args.pii_anonymise,
            )
        )
    steps += [HeldOut(heldout_rule(spec, str(config_file), "mixture"), tokenizer_file), Tally("held_out")]
    filters: list = []
    if not spec.source_format.free_text:
        pass  # curated pairs and chats (the red-team set): prose heuristics would drop short prompts and refusals
    elif spec.lang == "code":
        filters.append(CodeQuality())
    else:
        filters.append(LanguageId(spec.lang, _min_scores(args), args.mislabelled, routes))
        try:
            filters += quality_filters(list(args.quality_filters), dict(args.quality_overrides))
        except ValueError as err:
            raise RecipeError(config_file, "quality_filters", str(err)) from None
        if args.max_symbol_digit_ratio is not None:
            filters.append(SymbolDigitRatio(args.max_symbol_digit_ratio))
        if args.toxicity_filter:
            filters.append(ToxicWords())
    for f in filters:
        step = _step_name(f)
        steps += [Counted(f, step, tokenizer_file, removed(step)), Tally(step)]
    if args.pii_anonymise:
        steps.append(PiiAnonymizer())
    if prompts:
        steps.append(ContaminationCheck(prompts, args.leakage_threshold, str(d.leaks), name))
    # rerouted documents carry their new source: they land in that source's folder, named by origin
    steps.append(_writer(d.work / "clean", f"${{source}}/{origin}", args.intermediate_file_mb))
    return steps


REPORT_NAMES = {
    "LanguageId": "language_id",
    "CodeQuality": "code_quality",
    "SymbolDigitRatio": "symbol_digit_ratio",
    "ToxicWords": "toxic_words",
}


def _min_scores(args: MixtureArguments) -> dict[str, float]:
    """The recipe's language-id thresholds over the defaults: naming one language keeps the others'."""
    from dataclasses import fields

    default = next(f for f in fields(MixtureArguments) if f.name == "language_id_min_score").default_factory()
    return {**default, **(args.language_id_min_score or {})}


def _step_name(step) -> str:
    """A filter's name in the report and under removed/ (the quality filters carry their recipe name)."""
    return getattr(step, "filter_name", None) or REPORT_NAMES[type(step).__name__]


# ----------------------------------------------------------------------------- held-out windows
class HeldOutSample(PipelineStep):
    """Copies the first held-out documents of a task (up to ``max_tokens``, EOS included) for the windows the
    training run evaluates on; every document passes on unchanged (``HeldOut`` after it sets them aside).

    The cap keeps the copy small whatever the corpus size: every task of a source may supply all the windows.
    """

    name = "✂ held-out sample"
    type = "💽 - WRITER"

    def __init__(self, fraction: float, max_tokens: int, tokenizer_file: str, writer, anonymise: bool):
        super().__init__()
        self.fraction, self.max_tokens, self.writer = fraction, max_tokens, writer
        self.tokenizer_file, self.anonymise = tokenizer_file, anonymise

    def run(self, data, rank: int = 0, world_size: int = 1):
        import dataclasses

        from .clean import PiiAnonymizer
        from .intake import _TokenCounter
        from .sources import in_heldout

        count, written = _TokenCounter(self.tokenizer_file), 0
        pii = PiiAnonymizer() if self.anonymise else None  # the placeholders training sees, not the addresses
        with self.writer as out:
            for doc in data:
                if written < self.max_tokens and in_heldout(doc.text, self.fraction):
                    sample = dataclasses.replace(doc, text=pii.anonymise(doc.text)[0]) if pii else doc
                    tokens = count([sample.text])
                    out.write(sample, rank)
                    written += tokens
                    self.stat_update("sampled_docs")
                    self.stat_update("sampled_tokens", value=tokens)
                yield doc


def _monitored(spec: SourceSpec) -> bool:
    """Plain text of one of the six languages (instruction pairs and chats would skew a language's loss)."""
    return spec.source_format.free_text and spec.lang in LANGUAGES


def _in_turn(iterators: list):
    """Items of several iterators taken one from each in turn (sources of one language share the windows)."""
    active = list(iterators)
    while active:
        for it in list(active):
            try:
                yield next(it)
            except StopIteration:
                active.remove(it)


def _sampled_texts(folder: Path):
    import gzip

    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)["text"]


def _heldout_windows(
    specs: list[SourceSpec], args: MixtureArguments, d: DatasetDir, tokenizer_file: str, eos: str, token_size: int
) -> dict[str, int]:
    """Per language, up to ``heldout_blocks`` windows packed from the sampled held-out documents of its sources
    (taken in turn), into ``heldout/<lang>.npy``; returns the windows per language."""
    from .intake import eos_tokenizer
    from .stream import pack_heldout

    shutil.rmtree(d.heldout, ignore_errors=True)  # a resumed build packs them again
    if args.heldout_blocks <= 0:
        logger.info("held-out windows: none (heldout_blocks: 0): no held-out loss during training")
        return {}
    by_lang: dict[str, list[SourceSpec]] = {}
    for spec in specs:
        if _monitored(spec):
            by_lang.setdefault(spec.lang, []).append(spec)
    tokenizer = eos_tokenizer(tokenizer_file, eos)
    notes, shown = {}, []
    for lang in sorted(by_lang, key=LANGUAGES.index):
        lang_specs = by_lang[lang]
        texts = _in_turn([_sampled_texts(d.heldout_docs(s.name)) for s in lang_specs])
        note = pack_heldout(texts, d.heldout_tokens(lang), tokenizer, args.seq_length, args.heldout_blocks, token_size)
        notes[lang] = {**note, "sources": [s.name for s in lang_specs if s.holdout_fraction > 0]}
        why = (
            ""
            if note["windows"]
            else (" (holdout_fraction 0)" if not notes[lang]["sources"] else " (too few held-out tokens)")
        )
        shown.append(f"{lang} {note['windows']}{why}")
    write_json(
        d.heldout_json,
        {
            "seq_length": args.seq_length,
            "token_size": token_size,
            "heldout_blocks": args.heldout_blocks,
            "languages": notes,
        },
    )
    logger.info(
        "held-out windows of %d tokens per language (eval during training): %s",
        args.seq_length,
        ", ".join(shown) or "no source of a known language",
    )
    return {lang: n["windows"] for lang, n in notes.items()}


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


def _tokenize_chain(
    spec: SourceSpec,
    args: MixtureArguments,
    d: DatasetDir,
    tokenizer_file: str,
    eos: str,
    deduped: bool,
    seed: int,
    config_file,
) -> tuple[list, int]:
    from datatrove.pipeline.readers import JsonlReader

    from .clean import FillInTheMiddle
    from .intake import ShardWriter

    folder = d.work / ("dedup" if deduped else "clean") / spec.name
    files = len(list(folder.glob("*.jsonl.gz"))) if folder.is_dir() else 0
    if not files:
        from .report import why_empty

        raise RecipeError(config_file, f"mixture[{spec.name}]", f"documents to train on: {why_empty(d, spec)}")
    steps: list = [JsonlReader(str(folder), glob_pattern="*.jsonl.gz", add_file_path=False)]
    if spec.lang == "code" and spec.source_format.free_text and args.fim_rate > 0:
        steps.append(FillInTheMiddle(args.fim_rate, args.fim_spm_rate, seed=seed))
    # batch_size: documents held per tokenizer batch (datatrove's 10,000 made memory follow file size)
    steps.append(
        ShardWriter(
            str(d.source_tokens(spec.name)),
            tokenizer_file,
            eos_token=eos,
            local_working_dir=str(d.work / "tokenize" / spec.name),
            seed=seed,
            shuffle_documents=True,
            batch_size=TOKENIZE_BATCH,
        )
    )
    return steps, files  # one task per (size-capped) file: memory per task does not grow with the corpus


def run_per_source(
    chains: dict[str, tuple[list, int]], phase: Path, args: MixtureArguments, job_name: str, sizes: dict[str, int]
) -> None:
    """Every source's chain as tasks of one executor (one process pool for the whole phase).

    Largest sources first: workers take tasks in rank order, so the long ones start early and the last
    tasks to finish are short ones (the order is fixed by the inputs, so a resumed build maps ranks alike).
    """
    from .multisource import SourceTasks

    per_task = {name: sizes.get(name, 0) / max(1, tasks) for name, (_, tasks) in chains.items()}
    ordered = dict(sorted(chains.items(), key=lambda kv: -per_task[kv[0]]))
    router = SourceTasks(ordered, phase / "by_source")
    run_pipeline([router], phase, router.world_size, args, job_name)


# ----------------------------------------------------------------------------- the whole build
def build_corpus(
    model_args: ModelArguments,
    mix_args: MixtureArguments,
    out_dir: str | Path,
    config_file: str | Path = "<stage config>",
    title: str = "mixture",
) -> Path:
    from .contamination import raise_on_hits, test_prompts
    from .intake import check_hub_source, check_local_source
    from .mixer import mixture_table, resolve_mixture
    from .report import filter_report, log_filter_report, source_sizes
    from .stream import build_index, realised_shares

    if mix_args.train_tokens <= 0:
        raise RecipeError(config_file, "train_tokens", "expected the stage's token budget (a positive integer)")
    if mix_args.data_executor not in ("local", "slurm"):
        raise RecipeError(config_file, "data_executor", f"expected 'local' or 'slurm', got {mix_args.data_executor!r}")
    if mix_args.data_executor == "slurm" and not shutil.which("sbatch"):
        raise RecipeError(
            config_file,
            "data_executor",
            "'slurm' needs sbatch on PATH (run the data step on a Slurm login node, or set data_executor: local)",
        )
    if mix_args.mislabelled not in ("drop", "reroute"):
        raise RecipeError(config_file, "mislabelled", f"expected 'drop' or 'reroute', got {mix_args.mislabelled!r}")
    specs = source_specs(mix_args.mixture, "mixture", config_file)
    for i, spec in enumerate(specs):
        if spec.path is not None:
            check_local_source(spec, config_file, f"mixture[{i}]")
        else:
            check_hub_source(spec, config_file, f"mixture[{i}]")
    final = DatasetDir(out_dir)
    d = final.partial
    _refuse_foreign(final, config_file)  # the finished folder is replaced at the end: it must hold only ours
    with _build_lock(d, config_file):
        _refuse_foreign(d, config_file)
        tests = source_specs(
            mix_args.contamination_sources, "contamination_sources", config_file
        )  # their files are inputs too
        _start_or_resume(d, _build_identity(model_args, mix_args, specs + tests))
        tokenizer = load_tokenizer(model_args, config_file)
        if not (d.tokenizer / "tokenizer.json").is_file():
            tokenizer.save_pretrained(d.tokenizer)
        tokenizer_file = str(d.tokenizer / "tokenizer.json")
        # the first text source of each language receives documents of that language found elsewhere
        routes: dict[str, str] = {}
        for s in specs:
            if s.source_format.free_text and s.lang in PROSE_LANGUAGES:
                routes.setdefault(s.lang, s.name)
        started = time.monotonic()
        logger.info(
            "clean: %d sources x %d task(s), %d worker(s)", len(specs), mix_args.data_tasks, mix_args.data_workers
        )
        prompts = test_prompts(mix_args.contamination_sources, str(config_file))
        chains = {
            spec.name: (
                _clean_pipeline(spec, mix_args, d, tokenizer_file, routes, config_file, prompts),
                mix_args.data_tasks,
            )
            for spec in specs
        }
        run_per_source(chains, d.logs / "clean", mix_args, "clean", _input_sizes(specs))
        raise_on_hits(d.leaks, prompts, config_file)  # before anything is tokenized or mixed
        if prompts:
            logger.info("no training document holds any of the %d held-out test prompts", len(prompts))
        if mix_args.minhash_dedup:
            logger.info("MinHash near-duplicate removal over %d sources", len(specs))
            _dedup(mix_args, d, specs)
        logger.info("tokenize %d sources", len(specs))
        stage_in = d.work / ("dedup" if mix_args.minhash_dedup else "clean")
        run_per_source(
            {
                spec.name: _tokenize_chain(
                    spec,
                    mix_args,
                    d,
                    tokenizer_file,
                    tokenizer.eos_token,
                    mix_args.minhash_dedup,
                    mix_args.mixture_seed,
                    config_file,
                )
                for spec in specs
            },
            d.logs / "tokenize",
            mix_args,
            "tokenize",
            {s.name: sum(f.stat().st_size for f in (stage_in / s.name).glob("*")) for s in specs},
        )
        token_size = 2 if len(tokenizer) <= 65536 else 4  # what datatrove's tokenizer chose
        heldout = _heldout_windows(specs, mix_args, d, tokenizer_file, tokenizer.eos_token, token_size)
        report = filter_report(d, specs, mix_args, token_size, tokenizer_file)
        report["heldout_windows"] = heldout
        write_json(d.filter_report_json, report)
        log_filter_report(report)
        sizes = source_sizes(d, specs, mix_args.seq_length, token_size)
        rows = resolve_mixture(
            sizes,
            mix_args.train_tokens,
            mix_args.seq_length,
            temperature=mix_args.temperature,
            replay_share=mix_args.replay_share,
            max_epochs=mix_args.max_epochs,
            config_file=config_file,
        )
        length = build_index(rows, mix_args.mixture_seed, d.index)
        if length == 0:
            raise RecipeError(
                config_file,
                "train_tokens",
                f"budget {mix_args.train_tokens} is smaller than one sequence of {mix_args.seq_length} tokens",
            )
        realised = realised_shares(d.index, [r.name for r in rows])
        mixture = _mixture_json(rows, realised, mix_args, length, tokenizer, time.monotonic() - started)
        write_json(d.mixture_json, mixture)
        plot_mixture(mixture, d.mixture_png, title)
        logger.info("the mixture (mixture.json, mixture.png):\n%s", mixture_table(rows))
        shutil.rmtree(d.work, ignore_errors=True)  # intermediate documents: ours, as large as the corpus
        d.build_json.unlink()
        d.lock.unlink()
        replace_dir(d.root, final.root)
    return final.root


def _mixture_json(rows, realised: dict, args: MixtureArguments, length: int, tokenizer, seconds: float) -> dict:
    sources = []
    for r in rows:
        row = asdict(r)
        row["realised_share"] = realised.get(r.name, 0.0)
        row["target_share"] = r.share
        sources.append(row)
    return {
        "budget_tokens": args.train_tokens,
        "seq_length": args.seq_length,
        "sequences": length,
        "tokens": length * args.seq_length,
        "seed": args.mixture_seed,
        "temperature": args.temperature,
        "replay_share": args.replay_share,
        "max_epochs": args.max_epochs,
        "tokenizer_vocab": len(tokenizer),
        "token_size": 2 if len(tokenizer) <= 65536 else 4,
        "build_seconds": round(seconds, 1),
        "sources": sources,
    }
