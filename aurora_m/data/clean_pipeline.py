"""One source's cleaning pipeline (the clean phase): read -> length cap -> language id -> quality ->
symbol/digit ratio -> toxic words -> held-out split -> PII -> contamination check -> ``work/clean/<source>/``, a
tally after every filter and each filter's removed documents kept.

The held-out split comes after the filters, so held-out text (the windows training evaluates on) is as clean as
training text: a profane or wrong-language document whose hash puts it on the held-out side is removed there too,
and counted (``removed_heldout_docs`` per filter in the report). Which side a document is on still depends on its
raw text alone (the split precedes PII masking, which rewrites text), so the training side is the same documents
as before and CAT, SFT and evaluation agree on the split.
"""

from __future__ import annotations

from ..args import MixtureArguments
from ..errors import RecipeError
from ..layout import DatasetDir
from ..source_spec import SourceSpec
from .executors import _writer
from .heldout_windows import HeldOutSample, _monitored
from .sources import heldout_rule


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
    rule = heldout_rule(spec, str(config_file), "mixture")
    filters: list = []
    if not spec.source_format.free_text:
        pass  # curated pairs and chats (the red-team set): prose heuristics would drop short prompts and refusals
    elif spec.lang == "code":
        filters.append(CodeQuality())
    else:
        filters.append(LanguageId.for_source(spec.lang, args, routes))
        try:
            filters += quality_filters(
                list(args.quality_filters),
                dict(args.quality_overrides),
                language_overrides=dict(args.language_settings or {}),
            )
        except ValueError as err:
            raise RecipeError(config_file, "quality_filters", str(err)) from None
        if args.max_symbol_digit_ratio is not None:
            filters.append(SymbolDigitRatio(args.max_symbol_digit_ratio))
        if args.toxicity_filter:
            filters.append(ToxicWords())
    for f in filters:
        step = _step_name(f)
        steps += [Counted(f, step, tokenizer_file, removed(step), heldout=rule), Tally(step)]
    if args.heldout_blocks > 0 and spec.holdout_fraction > 0 and _monitored(spec):
        steps.append(
            HeldOutSample(
                spec.holdout_fraction,
                args.heldout_blocks * args.seq_length,
                tokenizer_file,
                _writer(d.heldout_docs(name), origin),
                args.pii_anonymise and spec.masks_pii,
                source=name,
            )
        )
    steps += [HeldOut(rule, tokenizer_file), Tally("held_out")]
    if args.pii_anonymise and spec.masks_pii:
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


def _step_name(step) -> str:
    """A filter's name in the report and under removed/ (the quality filters carry their recipe name)."""
    return getattr(step, "filter_name", None) or REPORT_NAMES[type(step).__name__]
