"""Languages are data: any LID-176 language gets its settings with no recipe key, the gaps are said in one line,
and the language-ID floor keeps clean text under its own language while other languages are still caught.

The paragraphs in ``fixtures/languages`` were written for these tests (never used to tune the tiny corpus'
settings): short technical documentation, some with inline code, in en/fi/hi/ja/vi, code snippets, and
everyday paragraphs in de/ko/sw (languages the project ships nothing for) with one planted profane document each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatrove.data import Document

from aurora_m.data.clean import (
    FILTER_NAMES,
    CodeQuality,
    LanguageId,
    SymbolDigitRatio,
    ToxicWords,
    language_notes,
    profile,
    quality_filters,
)
from aurora_m.languages import is_language, lid_labels

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "languages"
NEW = ("de", "ko", "sw")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def doc(text: str, language: str, i: int = 0) -> Document:
    return Document(text=text, id=f"{language}-{i}", metadata={"language": language, "source": language})


def paragraphs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows(FIXTURES / "technical_paragraphs.jsonl"):
        out.setdefault(r["lang"], []).append(r["text"])
    for lang in NEW:
        out[lang] = [r["text"] for r in rows(FIXTURES / "data" / f"{lang}.jsonl") if "planted" not in r]
    return out


def test_a_recipe_may_name_every_lid_176_language_and_nothing_else():
    labels = lid_labels()
    assert len(labels) == len(set(labels)) == 176
    assert {"en", "de", "ko", "sw", "zh", "th", "yue"} <= set(labels)
    assert is_language("code") and is_language("sw")
    assert not is_language("kr") and not is_language("sv-SE") and not is_language(None)


def test_language_id_keeps_clean_paragraphs_and_catches_other_languages():
    """At the default floor no clean paragraph is lost (the old 0.65 lost English and Swahili ones), and a
    paragraph in a source of another language is removed as wrong_language, every time."""
    texts = paragraphs()
    prose = [lang for lang in texts if lang != "code"]
    assert sum(len(texts[lang]) for lang in prose) >= 160
    lost, old_lost, caught, planted = 0, {}, 0, 0
    for lang in prose:
        keep, old = LanguageId(lang), LanguageId(lang, {lang: 0.65})
        for i, text in enumerate(texts[lang]):
            lost += keep.filter(doc(text, lang, i)) is not True
            old_lost[lang] = old_lost.get(lang, 0) + (old.filter(doc(text, lang, i)) is not True)
        for other in prose:
            if other == lang:
                continue
            for i, text in enumerate(texts[other]):
                planted += 1
                caught += keep.filter(doc(text, lang, i)) == (False, "wrong_language")
    assert lost == 0
    assert old_lost["en"] >= 3 and old_lost["sw"] == len(texts["sw"])  # what the old floor did
    assert caught == planted
    # code is not language-identified: its own filters keep every snippet
    assert all(CodeQuality().filter(doc(text, "code", i)) is True for i, text in enumerate(texts["code"]))


def chain(language: str, docs: list[Document]) -> dict[str, str]:
    """id -> the filter that removed it, through the prose chain in the data step's order."""
    steps = [("language_id", LanguageId(language))]
    steps += list(zip(FILTER_NAMES, quality_filters(list(FILTER_NAMES))))
    steps += [("symbol_digit_ratio", SymbolDigitRatio(0.2)), ("toxic_words", ToxicWords())]
    removed: dict[str, str] = {}
    for name, step in steps:
        for d in docs:
            if d.id not in removed and step.filter(d) is not True:
                removed[d.id] = name
    return removed


@pytest.mark.parametrize("language", NEW)
def test_an_unshipped_language_keeps_its_clean_text_and_loses_planted_profanity_where_a_list_exists(language):
    data = rows(FIXTURES / "data" / f"{language}.jsonl")
    removed = chain(language, [Document(text=r["text"], id=r["id"], metadata={"language": language}) for r in data])
    clean = [r for r in data if "planted" not in r]
    kept = [r for r in clean if r["id"] not in removed]
    assert len(kept) / len(clean) >= 0.85, removed
    planted = next(r for r in data if r.get("planted") == "toxic_words")
    if profile(language).toxic_words_from:
        assert removed.get(planted["id"]) == "toxic_words"
    else:  # Swahili: no list anywhere; said in one line, never replaced by the English list
        assert planted["id"] not in removed
        assert f"{language}: no toxicity list: the toxicity filter does nothing for {language}" in language_notes(
            [language]
        )


def test_settings_come_from_maintained_lists_and_the_gaps_are_said():
    de, ko, th = profile("de"), profile("ko"), profile("th")
    assert (de.script, de.splitter, ko.script, th.splitter) == ("Latn", "spaced", "Hang", None)
    assert "stopwords-iso" in de.stop_words_from and "LDNOOBW" in ko.toxic_words_from
    assert profile("en").toxic_words_from == "wordlists/en.txt"
    notes = language_notes(["en", "de", "th"], quality_filters=("gopher_quality", "c4"))
    assert notes == ["th: no word splitter for the Thai script: gopher_quality, c4 pass th documents through"]
    # German is filtered with German stop words, not Gopher's English ones
    (gopher,) = quality_filters(["gopher_quality"])
    assert {"und", "der"} <= gopher.inner("de").stop_words and "the" not in gopher.inner("de").stop_words


def test_language_settings_apply_to_their_language_only():
    (strict,) = quality_filters(
        ["gopher_quality"], language_overrides={"ko": {"gopher_quality": {"min_doc_words": 500}}}
    )
    text = rows(FIXTURES / "data" / "ko.jsonl")[0]["text"]
    assert strict.filter(doc(text, "ko")) == (False, "gopher_short_doc")
    german = rows(FIXTURES / "data" / "de.jsonl")[0]["text"]
    assert strict.filter(doc(german, "de")) is True
    with pytest.raises(ValueError, match="ko: unknown setting"):
        quality_filters(["gopher_quality"], language_overrides={"ko": {"gopher_quality": {"min_doc_wordz": 1}}})


def test_a_recipe_for_three_unshipped_languages_runs_its_data_step_with_no_extra_keys(tmp_path):
    """German, Korean and Swahili plus code, each source named by its language and nothing else: every source
    reads exactly its file, >= 85% of each language's clean documents reach the shards, the planted profanity
    is removed where a list exists, and the report says which language has no list."""
    from aurora_m.args import MixtureArguments, ModelArguments
    from aurora_m.data.corpus import build_corpus
    from aurora_m.layout import DatasetDir

    data = tmp_path / "data"
    data.mkdir()
    for lang in NEW:
        (data / f"{lang}.jsonl").write_text((FIXTURES / "data" / f"{lang}.jsonl").read_text(encoding="utf-8"))
    tiny_code = Path(__file__).resolve().parents[1] / "recipes" / "aurora-m-tiny" / "data" / "code.jsonl"
    (data / "code.jsonl").write_text(tiny_code.read_text(encoding="utf-8"))
    files = [str(data / f"{lang}.jsonl") for lang in (*NEW, "code")]
    mixture = [{"name": lang, "path": files[i]} for i, lang in enumerate((*NEW, "code"))]
    args = MixtureArguments(mixture=mixture, seq_length=64, train_tokens=64 * 100, max_epochs=20, heldout_blocks=0)
    out = DatasetDir(build_corpus(ModelArguments(tokenizer_train_files=files), args, tmp_path / "out"))
    report = json.loads(out.filter_report_json.read_text())
    by_name = {row["name"]: row for row in report["sources"]}
    for lang in NEW:
        planted_ids = {r["id"] for r in rows(data / f"{lang}.jsonl") if "planted" in r}
        row = by_name[lang]
        assert row["docs_in"] == len(rows(data / f"{lang}.jsonl")), lang  # its file, and only its file
        assert row["language"] == lang
        clean_in = row["docs_in"] - len(planted_ids)
        toxic = next((s for s in row["steps"] if s["step"] == "toxic_words"), {}).get("removed_docs", 0)
        assert (row["kept_docs"] - (0 if profile(lang).toxic_words_from else 1)) / clean_in >= 0.85, row
        assert toxic == (1 if profile(lang).toxic_words_from else 0), (lang, row["steps"])
    assert by_name["code"]["docs_in"] == len(rows(data / "code.jsonl"))
    assert "sw: no toxicity list: the toxicity filter does nothing for sw" in report["notes"]
