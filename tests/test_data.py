"""Sources, the hash split, mixing by token budget and wrapped packing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurora_m.args import SourceSpec
from aurora_m.data.formats import instruction_text
from aurora_m.data.mixture import mix_and_pack, pack_wrapped, plan_mixture
from aurora_m.data.sources import in_heldout, load_source
from aurora_m.errors import RecipeError


def test_plan_follows_weights_and_repeats_small_sources():
    lengths = {"big": np.full(1000, 10), "small": np.full(10, 10)}
    picks, draws = plan_mixture(lengths, {"big": 1.0, "small": 3.0}, budget=2000, seed=0)
    by_name = {d.name: d for d in draws}
    assert by_name["small"].share == pytest.approx(0.75, abs=0.02)
    assert by_name["small"].epochs == pytest.approx(15, abs=0.2)  # 1500 tokens from a 100-token source
    assert by_name["big"].epochs < 1  # subsampled
    # a repeated source cycles through all its documents before repeating any
    first_pass = picks["small"][:10]
    assert sorted(first_pass.tolist()) == list(range(10))


def test_pack_wrapped_joins_with_eos_and_reports_the_tail():
    blocks, dropped = pack_wrapped([[1, 2, 3], [4, 5], [6]], seq_length=4, eos_id=0)
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]
    assert dropped == 1


def test_mix_and_pack_is_deterministic_and_accounts_for_tokens():
    tokenized = {"a": [[1] * 7] * 20, "b": [[2] * 5] * 20}
    blocks1, report1 = mix_and_pack(tokenized, {"a": 1, "b": 1}, 200, 16, 0, seed=3)
    blocks2, _ = mix_and_pack(tokenized, {"a": 1, "b": 1}, 200, 16, 0, seed=3)
    assert np.array_equal(blocks1, blocks2)
    drawn = sum(s["tokens_drawn"] for s in report1["sources"])
    assert report1["tokens"] + report1["dropped_tail_tokens"] == drawn
    assert {1, 2} <= set(np.unique(blocks1).tolist())


def test_heldout_split_is_stable_and_disjoint():
    texts = [f"document number {i}" for i in range(2000)]
    held = [t for t in texts if in_heldout(t, 0.1)]
    assert 150 < len(held) < 250
    assert held == [t for t in texts if in_heldout(t, 0.1)]
    assert not any(in_heldout(t, 0.0) for t in texts)


@pytest.fixture()
def jsonl(tmp_path):
    rows = [{"text": "hello world"}, {"text": ""}, {"text": None}, {"text": "second document"},
            {"text": "third one"}]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_load_source_counts_what_it_sets_aside(jsonl):
    ds, report = load_source(SourceSpec(name="s", path=str(jsonl), max_docs=2), "x.yaml", "mixture")
    assert report.docs_read == 5 and report.removed_empty == 2 and report.capped == 1 and report.kept == 2
    assert report.docs_read == report.removed_empty + report.capped + report.kept + report.set_aside_by_split
    assert list(ds["text"]) == ["hello world", "second document"]


def test_load_source_names_the_missing_column(jsonl):
    with pytest.raises(RecipeError, match=r"x.yaml: mixture\[s\].text_field: column 'content' not in"):
        load_source(SourceSpec(name="s", path=str(jsonl), text_field="content"), "x.yaml", "mixture")


def test_instruction_sources_use_the_papers_template(tmp_path):
    path = tmp_path / "rt.jsonl"
    path.write_text(json.dumps({"instruction": "Do harm?", "response": "No, because...", "category": "c"}) + "\n")
    spec = SourceSpec(name="rt", path=str(path), format="instruction")
    ds, _ = load_source(spec, "x.yaml", "sft_sources", prompt_completion=True)
    assert ds[0]["prompt"] == "### Instruction:\nDo harm?\n### Response:\n"
    assert ds[0]["prompt"] + ds[0]["completion"] == instruction_text("Do harm?", "No, because...")
    assert ds[0]["category"] == "c"
