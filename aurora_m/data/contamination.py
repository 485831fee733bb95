"""No held-out test prompt in any training data: the check every training stage's data step runs.

The test prompts are a stage's ``contamination_sources`` (the red-team set's held-out side, the eval
prompts). A training document leaks one when it contains the prompt (after normalisation: case,
punctuation, spacing) or is a near duplicate of it (character n-gram Jaccard at or above
``leakage_threshold``), see :mod:`aurora_m.safety.leakage`. Any leak fails the data step with one line
naming the offending rows and the prompts they leak; nothing is removed silently, since a benchmark
prompt in the training data means the data (or the split) is wrong, not that one row is noise.

The index holds the test prompts only; each document costs time linear in its length, so the check
streams through corpora of any size (in pretraining, as one more step of every datatrove cleaning task).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..errors import RecipeError
from ..prompt import instructions_in
from ..source_spec import source_specs
from .sources import read_source

logger = logging.getLogger(__name__)

KEY = "contamination_sources"
SHOWN = 5  # leaks named in the error; the count covers the rest
SNIPPET = 60


@dataclass(frozen=True)
class TestPrompt:
    id: str  # "redteam row 17": the source's name and its row in the file
    text: str


def test_prompts(sources: list[dict], config_file: str) -> list[TestPrompt]:
    """The prompts of every contamination source: what each source's format gives as a prompt."""
    if not sources:
        logger.warning(
            "%s: no contamination_sources: this stage's training data is not checked for held-out test "
            "prompts (list the red-team test split and the eval prompts there)",
            config_file,
        )

    prompts = []
    for spec in source_specs(sources, KEY, config_file):
        docs, _ = read_source(spec, config_file, KEY)
        texts = docs.give("prompt")  # the request alone: an instruction, a text, a chat's first user turn
        prompts += [TestPrompt(f"{spec.name} row {row + 1}", text.strip()) for row, text in zip(docs.rows, texts)]
    return prompts


def leakage_index(prompts: list[TestPrompt], threshold: float):
    from ..safety.leakage import LeakageIndex

    return LeakageIndex([(p.id, p.text) for p in prompts], near_threshold=threshold)


def describe(leaks: list[tuple[str, object]], prompts: dict[str, str]) -> str:
    shown = []
    for row_id, match in leaks[:SHOWN]:
        text = prompts.get(match.prompt_id, "")
        snippet = text if len(text) <= SNIPPET else text[:SNIPPET] + "..."
        how = "contains" if match.kind == "exact" else f"is a near duplicate ({match.score:.2f}) of"
        shown.append(f"{row_id} {how} test prompt {match.prompt_id} {snippet!r}")
    more = f" (and {len(leaks) - SHOWN} more)" if len(leaks) > SHOWN else ""
    return "; ".join(shown) + more


def leak_error(config_file, leaks: list[tuple[str, object]], prompts: list[TestPrompt]) -> RecipeError:
    by_id = {p.id: p.text for p in prompts}
    return RecipeError(
        config_file,
        KEY,
        f"{len(leaks)} training row(s) hold held-out test prompts: "
        f"{describe(leaks, by_id)}. Remove them from the training data (or the "
        f"prompts from the test split); nothing was trained",
    )


def leaks_in(index, text: str) -> list:
    """The test prompts a training text leaks: the whole text, and each instruction in it on its own."""
    found = {}
    for part in [text, *instructions_in(text)]:
        for match in index.matches(part):
            if match.prompt_id not in found or match.kind == "exact":
                found[match.prompt_id] = match
    return list(found.values())


def check_rows(rows: Iterable[tuple[str, str]], sources: list[dict], threshold: float, config_file) -> int:
    """Fail when any (row id, text) leaks a test prompt; returns the number of test prompts checked against."""
    prompts = test_prompts(sources, str(config_file))  # none listed: a warning says the check is off
    if not prompts:
        return 0
    index = leakage_index(prompts, threshold)
    leaks = [(row_id, match) for row_id, text in rows for match in leaks_in(index, text)]
    if leaks:
        raise leak_error(config_file, leaks, prompts)
    return len(prompts)


class ContaminationCheck(PipelineStep):
    """A datatrove step: documents pass unchanged; any that leaks a test prompt is written to ``hits_dir``
    (read by :func:`raise_on_hits` once every task is done), and counted."""

    name = "🔎 test-prompt leakage"
    type = "🔎 - FILTER"

    def __init__(self, prompts: list[TestPrompt], threshold: float, hits_dir: str, source: str):
        super().__init__()
        self.prompts, self.threshold, self.hits_dir, self.source = prompts, threshold, hits_dir, source

    def run(self, data, rank: int = 0, world_size: int = 1):
        index = leakage_index(self.prompts, self.threshold)  # built in the worker: pickling stays small
        path = Path(self.hits_dir) / f"{self.source}_{rank:05d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for doc in data:
                for match in leaks_in(index, doc.text):
                    self.stat_update("leaks")
                    out.write(
                        json.dumps(
                            {
                                "row": f"{self.source} document {doc.id}",
                                "prompt_id": match.prompt_id,
                                "kind": match.kind,
                                "score": match.score,
                            }
                        )
                        + "\n"
                    )
                yield doc


def raise_on_hits(hits_dir: Path, prompts: list[TestPrompt], config_file) -> None:
    from ..safety.leakage import Match

    leaks = []
    for path in sorted(hits_dir.glob("*.jsonl")) if hits_dir.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            hit = json.loads(line)
            leaks.append((hit["row"], Match(hit["prompt_id"], hit["kind"], hit["score"])))
    if leaks:
        raise leak_error(config_file, leaks, prompts)
