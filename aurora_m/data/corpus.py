"""A pretraining stage's corpus: datatrove cleans, deduplicates and tokenizes; the mixer draws the stream.

The build, in order (each phase a datatrove executor, :mod:`.executors`: local processes, or Slurm jobs):

1. **clean** (:mod:`.clean_pipeline`), one pipeline per source: read (counted) -> length cap -> count tokens
   -> held-out split -> language id -> per-language quality -> symbol/digit ratio -> toxic words -> PII
   anonymised -> ``work/clean/<source>/``. Code gets code filters instead of the prose ones;
   instruction data (red-team pairs) is curated, so it gets only the cap, the split and PII.
2. **dedup** (:mod:`.dedup`): MinHash over every source's cleaned documents together (within and across sources).
3. **tokenize** (:mod:`.tokenize_shards`), one per source: fill-in-the-middle for code, then datatrove's
   tokenizer writes shuffled ``.ds`` shards (uint16 ids for vocabularies up to 65,536) into ``tokens/<source>/``.
4. **mix**: the table (source, share, tokens, epochs) from the stage's budget, and a seeded index
   of windows over the shards: the training stream. Its position is a number (a row of the index).
5. **held-out windows** (:mod:`.heldout_windows`, packed after tokenizing): cleaning copies each task's first held-out
   documents (``heldout_blocks`` windows' worth at most), packed per language into
   ``heldout/<lang>.npy``: what the training run evaluates (held-out loss, the forgetting monitor).

A ``Tally`` after every filter counts documents and tokens per source, so ``filter_report.json``
says what each filter removed, per source and per language; removed documents are kept under
``removed/<source>/<filter>/``. The build happens in a hidden ``.data.partial`` folder, resumable
after a kill (datatrove skips finished tasks) only for the same keys and input files, and becomes
the stage's data folder in one rename (:mod:`.partial_build`). Memory does not grow with the corpus: documents stream
through every phase; the index is written chunk by chunk.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ..args import MixtureArguments, ModelArguments
from ..errors import RecipeError
from ..io import replace_dir, write_json
from ..languages import CODE
from ..layout import DatasetDir
from ..patches import check_base_config_fits_tokenizer
from ..plots import plot_mixture
from ..source_spec import source_specs
from ..tokenizer import load_tokenizer
from .clean_pipeline import _clean_pipeline
from .dedup import _dedup
from .executors import run_per_source
from .heldout_windows import _heldout_windows
from .partial_build import _build_identity, _build_lock, _input_sizes, _refuse_foreign, _start_or_resume
from .tokenize_shards import _tokenize_chain

logger = logging.getLogger(__name__)


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
        check_base_config_fits_tokenizer(model_args, tokenizer, config_file)  # before hours of cleaning
        if not (d.tokenizer / "tokenizer.json").is_file():
            tokenizer.save_pretrained(d.tokenizer)
        tokenizer_file = str(d.tokenizer / "tokenizer.json")
        # the first text source of each language receives documents of that language found elsewhere
        routes: dict[str, str] = {}
        for s in specs:
            if s.source_format.free_text and s.lang not in (None, CODE):
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
