"""The held-out windows the training run evaluates on: cleaning samples each task's first held-out documents
(after the filters: held-out text is as clean as training text), and after tokenizing they are packed per
language into ``heldout/<lang>.npy``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..args import MixtureArguments
from ..io import write_json
from ..languages import language_order
from ..layout import DatasetDir
from ..source_spec import SourceSpec

logger = logging.getLogger(__name__)


class HeldOutSample(PipelineStep):
    """Copies the first held-out documents of a task (up to ``max_tokens``, EOS included) for the windows the
    training run evaluates on; every document passes on unchanged (``HeldOut`` after it sets them aside).

    The cap keeps the copy small whatever the corpus size: every task of a source may supply all the windows.
    """

    name = "✂ held-out sample"
    type = "💽 - WRITER"

    def __init__(
        self, fraction: float, max_tokens: int, tokenizer_file: str, writer, anonymise: bool, source: str = ""
    ):
        super().__init__()
        self.fraction, self.max_tokens, self.writer = fraction, max_tokens, writer
        self.tokenizer_file, self.anonymise = tokenizer_file, anonymise
        self.source = source  # a document language ID rerouted to another source is not this language's

    def run(self, data, rank: int = 0, world_size: int = 1):
        import dataclasses

        from .clean import PiiAnonymizer
        from .intake import _TokenCounter
        from .sources import in_heldout

        count, written = _TokenCounter(self.tokenizer_file), 0
        pii = PiiAnonymizer() if self.anonymise else None  # the placeholders training sees, not the addresses
        with self.writer as out:
            for doc in data:
                mine = not self.source or doc.metadata.get("source", self.source) == self.source
                if written < self.max_tokens and mine and in_heldout(doc.text, self.fraction):
                    sample = dataclasses.replace(doc, text=pii.anonymise(doc.text)[0]) if pii else doc
                    tokens = count([sample.text])
                    out.write(sample, rank)
                    written += tokens
                    self.stat_update("sampled_docs")
                    self.stat_update("sampled_tokens", value=tokens)
                yield doc


def _monitored(spec: SourceSpec) -> bool:
    """Plain text of a declared language (instruction pairs and chats would skew a language's loss)."""
    return spec.source_format.free_text and spec.lang is not None


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
    for lang in language_order(by_lang):
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
