"""Sources, the hash split, mixing by token budget and wrapped packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aurora_m.args import MixtureArguments, ModelArguments, SourceSpec
from aurora_m.data.build import build_pretrain_dataset
from aurora_m.data.formats import instruction_text
from aurora_m.data.mixture import draw_source, mix_and_pack, pack_wrapped, split_budget
from aurora_m.data.sources import in_heldout, load_source
from aurora_m.errors import RecipeError
from aurora_m.io import read_json
from aurora_m.layout import DatasetDir

TINY_DATA = Path(__file__).resolve().parents[1] / "recipes" / "aurora-m-tiny" / "data"


class ListDocs:
    """Documents held in a list, read the way the mixer reads a source."""

    def __init__(self, texts):
        self.items = list(texts)
        self.reads = 0

    def __len__(self):
        return len(self.items)

    def texts(self, positions):
        self.reads += len(positions)
        return [self.items[i] for i in positions]


class CharEncoder:
    """One token per character (its code point); remembers what it was asked to encode."""

    def __init__(self):
        self.calls, self.longest = 0, 0

    def __call__(self, texts):
        self.calls += len(texts)
        self.longest = max([self.longest, *map(len, texts)])
        return [[ord(c) for c in t] for t in texts]


def docs_of(letter: str, lengths) -> ListDocs:
    return ListDocs(letter * n for n in lengths)


def test_quotas_follow_weights_and_sum_to_the_budget():
    quotas = split_budget(1001, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert sum(quotas.values()) == 1001
    assert quotas == {"a": 250, "b": 250, "c": 501}


def test_each_source_gives_exactly_its_quota():
    rng = np.random.default_rng(0)
    sources = {"a": docs_of("a", rng.integers(1, 400, 200)), "b": docs_of("b", rng.integers(1, 60, 30)),
               "c": docs_of("c", rng.integers(1000, 3000, 5))}
    weights = {"a": 1.0, "b": 3.0, "c": 0.5}
    budget, seq = 64 * 100, 64
    blocks, report = mix_and_pack(sources, weights, budget, seq, eos_id=0, seed=7, encode=CharEncoder())
    assert blocks.dtype == np.int32 and blocks.shape == (100, seq) and report["dropped_tail_tokens"] == 0
    quotas = split_budget(budget, weights)
    for s in report["sources"]:
        assert s["tokens_drawn"] == s["quota_tokens"] == quotas[s["name"]]
        # each document costs its tokens plus one EOS: the stream holds exactly the quota
        assert int((blocks == ord(s["name"])).sum()) == s["tokens_drawn"] - s["docs_drawn"]
    assert int((blocks == 0).sum()) == sum(s["docs_drawn"] for s in report["sources"])
    assert sum(s["share"] for s in report["sources"]) == pytest.approx(1.0)


def test_a_repeated_source_cycles_all_its_documents_before_repeating_and_is_tokenized_once():
    docs = ListDocs(chr(0x4E00 + i) * (i + 1) for i in range(10))  # document i: i+1 copies of one character
    encode = CharEncoder()
    pieces, draw = draw_source("small", docs, encode, quota=400, max_doc_tokens=100,
                               rng=np.random.default_rng(3))
    drawn = [len(p) - 1 for p in pieces]  # which document each piece is
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:20]) == list(range(10))
    assert drawn[:10] != drawn[10:20]  # a fresh order each pass
    assert encode.calls == 10 and docs.reads == 10 and draw.docs_tokenized == 10
    assert draw.tokens_available == sum(range(1, 11)) + 10  # 55 tokens + 10 EOS
    assert draw.tokens_drawn == 400 and draw.epochs == pytest.approx(400 / 65)


def test_a_large_source_is_tokenized_only_as_far_as_its_quota():
    docs = docs_of("x", [99] * 10_000)  # 100 tokens each with EOS
    encode = CharEncoder()
    pieces, draw = draw_source("big", docs, encode, quota=2_050, max_doc_tokens=1000,
                               rng=np.random.default_rng(0))
    assert draw.tokens_drawn == 2_050 and draw.docs_drawn == 21 and draw.quota_cut_tokens == 50
    assert len(pieces[-1]) == 49  # the document crossing the quota is cut, its EOS kept
    assert encode.calls <= 21 + 2  # batches grow, then aim at what the quota still needs
    assert draw.tokens_available is None and draw.epochs == pytest.approx(21 / 10_000)


def test_long_documents_are_cut_by_characters_then_tokens():
    docs = ListDocs(["y" * 1000, "z" * 5])
    encode = CharEncoder()
    _, draw = draw_source("long", docs, encode, quota=10_000, max_doc_tokens=10, rng=np.random.default_rng(0))
    assert encode.longest == 10 * 16  # a long text never reaches the tokenizer whole
    assert draw.docs_cut == 1 and draw.tokens_cut == 150 and draw.chars_cut == 840
    assert draw.tokens_available == 11 + 6


def test_pack_wrapped_joins_with_eos_and_reports_the_tail():
    blocks, dropped = pack_wrapped([[1, 2, 3], [4, 5], [6]], seq_length=4, eos_id=0)
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]
    assert dropped == 1


def test_mix_and_pack_is_deterministic_and_accounts_for_tokens():
    def sources():
        return {"a": docs_of("a", [7] * 20), "b": ListDocs(f"b{i}" * 3 for i in range(20))}

    blocks1, report1 = mix_and_pack(sources(), {"a": 1, "b": 1}, 200, 16, 0, seed=3, encode=CharEncoder())
    blocks2, report2 = mix_and_pack(sources(), {"a": 1, "b": 1}, 200, 16, 0, seed=3, encode=CharEncoder())
    blocks3, _ = mix_and_pack(sources(), {"a": 1, "b": 1}, 200, 16, 0, seed=4, encode=CharEncoder())
    assert np.array_equal(blocks1, blocks2) and report1 == report2
    assert not np.array_equal(blocks1, blocks3)
    drawn = sum(s["tokens_drawn"] for s in report1["sources"])
    assert report1["tokens"] + report1["dropped_tail_tokens"] == drawn == 200
    assert {ord("a"), ord("b")} <= set(np.unique(blocks1).tolist())


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
    held, _ = load_source(SourceSpec(name="x", path=str(path), holdout_fraction=0.2, take="heldout"), "x.yaml",
                          "perplexity_sources")
    train_texts, held_texts = set(train["text"]), set(held["text"])
    assert not train_texts & held_texts
    assert len(train_texts | held_texts) == 300 and 30 < len(held_texts) < 90


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
    assert report.docs_read == (report.removed_empty + report.removed_not_text + report.capped + report.kept
                                + report.set_aside_by_split)
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


def test_build_pretrain_dataset_is_exact_and_deterministic(tmp_path, cache_dir):
    from datasets import load_from_disk

    files = [str(TINY_DATA / f"{lang}.jsonl") for lang in ("en", "fi", "hi", "ja", "vi", "code")]
    mixture = [{"name": "en", "path": str(TINY_DATA / "en.jsonl"), "weight": 3.0, "holdout_fraction": 0.1},
               {"name": "code", "path": str(TINY_DATA / "code.jsonl")}]
    budget = 64 * 300 + 10
    mix = MixtureArguments(mixture=mixture, seq_length=64, train_tokens=budget, mixture_seed=5, max_doc_tokens=200)
    built = [DatasetDir(build_pretrain_dataset(ModelArguments(tokenizer_train_files=files), mix, tmp_path / name,
                                               "cap.yaml", "test")) for name in ("a", "b")]
    a, b = (load_from_disk(str(d.train)) for d in built)
    assert a.features["input_ids"].feature.dtype == "int32"
    assert np.array_equal(np.asarray(a["input_ids"]), np.asarray(b["input_ids"])) and a.shape == (300, 1)
    report = read_json(built[0].mixture_json)
    assert report == read_json(built[1].mixture_json)
    assert report["tokens"] == 64 * 300 and report["dropped_tail_tokens"] == 10
    en, code = report["sources"]
    assert en["tokens_drawn"] == en["quota_tokens"] == 14408  # 19210 * 3/4 = 14407.5: the tie goes to the first
    assert code["tokens_drawn"] == code["quota_tokens"] == 4802
    assert en["epochs"] > 1 and en["tokens_available"] is not None  # the small source repeats
    assert code["epochs"] < 1 and code["tokens_available"] is None  # the large one is read only as far as needed
    assert code["docs_cut"] > 0 and code["tokens_cut"] > 0  # some code files are longer than 200 tokens
    assert report["read"][0]["set_aside_by_split"] > 0
    assert built[0].mixture_png.is_file() and (built[0].tokenizer / "tokenizer.json").is_file()
