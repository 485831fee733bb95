"""Sources read for SFT and eval, and the hash split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aurora_m.data.sources import in_heldout, load_source, read_source
from aurora_m.errors import RecipeError
from aurora_m.prompt import instruction_text
from aurora_m.source_spec import SourceSpec

TINY_DATA = Path(__file__).resolve().parents[1] / "recipes" / "aurora-m-tiny" / "data"


def test_heldout_split_is_stable_and_disjoint():
    texts = [f"document number {i}" for i in range(2000)]
    held = [t for t in texts if in_heldout(t, 0.1)]
    assert 150 < len(held) < 250
    assert held == [t for t in texts if in_heldout(t, 0.1)]
    assert not any(in_heldout(t, 0.0) for t in texts)


def test_train_and_heldout_sides_of_a_source_are_disjoint_and_cover_it(tmp_path):
    """What CAT and SFT train on and what eval measures never overlap, and nothing falls between them."""
    path = tmp_path / "lang.jsonl"
    path.write_text("".join(json.dumps({"text": f"sentence {i} about lakes"}) + "\n" for i in range(300)))
    train, _ = load_source(SourceSpec(name="x", path=str(path), holdout_fraction=0.2), "x.yaml", "mixture")
    held, _ = load_source(
        SourceSpec(name="x", path=str(path), holdout_fraction=0.2, take="heldout"), "x.yaml", "perplexity_sources"
    )
    train_texts, held_texts = set(train["text"]), set(held["text"])
    assert not train_texts & held_texts
    assert len(train_texts | held_texts) == 300 and 30 < len(held_texts) < 90


@pytest.fixture()
def jsonl(tmp_path):
    rows = [{"text": "hello world"}, {"text": ""}, {"text": None}, {"text": "second document"}, {"text": "third one"}]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_load_source_counts_what_it_sets_aside(jsonl):
    ds, report = load_source(SourceSpec(name="s", path=str(jsonl), max_docs=2), "x.yaml", "mixture")
    assert report.docs_read == 5 and report.removed_empty == 2 and report.capped == 1 and report.kept == 2
    assert report.docs_read == (
        report.removed_empty + report.removed_not_text + report.capped + report.kept + report.set_aside_by_split
    )
    assert list(ds["text"]) == ["hello world", "second document"]


def test_load_source_names_the_missing_column(jsonl):
    with pytest.raises(RecipeError, match=r"x.yaml: mixture\[s\].text_field: column 'content' not in"):
        load_source(SourceSpec(name="s", path=str(jsonl), text_field="content"), "x.yaml", "mixture")


def test_instruction_sources_use_the_papers_template(tmp_path):
    path = tmp_path / "rt.jsonl"
    path.write_text(json.dumps({"instruction": "Do harm?", "response": "No, because...", "category": "c"}) + "\n")
    spec = SourceSpec(name="rt", path=str(path), format="instruction")
    ds, _ = load_source(spec, "x.yaml", "mixture")  # CAT's document
    assert ds[0]["text"] == "### Instruction:\nDo harm?\n### Response:\nNo, because..."
    assert ds[0]["text"] == instruction_text("Do harm?", "No, because...")
    assert ds[0]["category"] == "c"
    docs, _ = read_source(spec, "x.yaml", "sft_sources", prompt_completion=True)  # SFT's chat
    assert docs.to_chats()[0]["messages"] == [
        {"role": "user", "content": "Do harm?"},
        {"role": "assistant", "content": "No, because..."},
    ]


def test_prompt_only_rows_are_valid_where_the_list_needs_only_prompts(tmp_path):
    """An eval or contamination set of requests without answers: every prompt is read (the leakage check covers
    them all); a training list still needs the answer."""
    from aurora_m.data.contamination import test_prompts

    path = tmp_path / "prompts.jsonl"
    rows = [
        {"instruction": f"How do I pick lock number {i}?", "response": "No." if i % 3 == 0 else None}
        for i in range(30)
    ]
    rows += [{"instruction": "Only a prompt, no response column at all."}]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows))
    source = {"name": "p", "path": str(path), "format": "instruction"}
    prompts = test_prompts([source], "cap.yaml")
    assert len(prompts) == 31 and prompts[-1].text == "Only a prompt, no response column at all."
    docs, report = read_source(SourceSpec(**source), "eval.yaml", "safety_sources")
    assert len(docs) == 31 and docs.give("prompt")[1] == "How do I pick lock number 1?"
    docs, report = read_source(SourceSpec(**source), "sft.yaml", "sft_sources")
    assert len(docs) == 10 and report.removed_empty == 21
