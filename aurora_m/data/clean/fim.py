"""Fill-in-the-middle rewriting of code documents with StarCoder's FIM tokens.

StarCoder (the base model) was trained with FIM at rate 0.5, half PSM and half SPM; CAP/CAT keep doing
it so the model keeps its infilling. The choice for a document depends only on the seed and its id,
so a re-run, or a run with another number of workers, rewrites the same documents the same way.
"""

from __future__ import annotations

import hashlib
import logging
import random

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

logger = logging.getLogger(__name__)

FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"


def _rng(seed: int, doc_id: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def fim_rewrite(text: str, rng: random.Random, spm_rate: float) -> tuple[str, str]:
    """(``text`` in PSM or SPM form, "psm" or "spm") with split points drawn from ``rng``."""
    a, b = sorted(rng.randint(0, len(text)) for _ in range(2))
    prefix, middle, suffix = text[:a], text[a:b], text[b:]
    if rng.random() < spm_rate:
        return FIM_PREFIX + FIM_SUFFIX + suffix + FIM_MIDDLE + prefix + middle, "spm"
    return FIM_PREFIX + prefix + FIM_SUFFIX + suffix + FIM_MIDDLE + middle, "psm"


class FillInTheMiddle(PipelineStep):
    """Rewrites a share ``rate`` of documents as PSM (or SPM, share ``spm_rate`` of those) FIM examples.

    PSM: ``<fim_prefix>prefix<fim_suffix>suffix<fim_middle>middle``;
    SPM: ``<fim_prefix><fim_suffix>suffix<fim_middle>prefix middle`` (StarCoder's variant).
    Sets ``doc.metadata["fim"]`` to "psm", "spm" or "none"; stats ``fim_psm``, ``fim_spm``, ``fim_none``.
    """

    name = "🧩 Fill-in-the-middle"
    type = "✂️ - FORMAT"

    def __init__(self, rate: float = 0.5, spm_rate: float = 0.5, seed: int = 0):
        super().__init__()
        for label, value in (("rate", rate), ("spm_rate", spm_rate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FIM {label} must be in [0, 1], got {value}")
        self.rate = rate
        self.spm_rate = spm_rate
        self.seed = seed

    def apply(self, doc: Document) -> str:
        """Rewrite ``doc`` in place; returns "psm", "spm" or "none"."""
        rng = _rng(self.seed, str(doc.id))
        mode = "none"
        if doc.text and rng.random() < self.rate:
            doc.text, mode = fim_rewrite(doc.text, rng, self.spm_rate)
        doc.metadata["fim"] = mode
        return mode

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                mode = self.apply(doc)
            self.stat_update(f"fim_{mode}")
            yield doc
