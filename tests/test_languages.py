"""Languages are data: any LID-176 language gets its settings with no recipe key, the gaps are said in one line,
and the language-ID floor keeps clean text under its own language while other languages are still caught.

The paragraphs in ``fixtures/languages`` were written for these tests (never used to tune the tiny corpus'
settings): short technical documentation, some with inline code, in en/fi/hi/ja/vi, code snippets, and
everyday paragraphs in de/ko/sw (languages the project ships nothing for) with one planted profane document each.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from datatrove.data import Document

from aurora_m.args import MixtureArguments
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
from aurora_m.data.clean.language_id import detect, probability
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
        keep, old = LanguageId(lang), LanguageId(lang, {lang: 0.65}, any_rank=())
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


# Short Swahili technical sentences (written for this test) full of English terms: LID-176's top label is en or eo,
# Swahili only second or third. On real pages 27 of 170 clean Swahili paragraphs were like this (docs/adapting.md).
SWAHILI_BELOW_TOP = [
    "Hifadhi faili ya config kisha endesha build tena.",
    "Bonyeza button ya Save ili kuhifadhi mabadiliko yako.",
    "Function hii inarudisha list ya users wote walio online.",
    "Component hii inapokea props mbili: title na items.",
]
OTHER_SHORT = [
    "Save the config file and run the build again before you push.",
    "Open the settings page and turn on two-factor login for your account.",
    "Der Server startet neu, sobald die Konfiguration gespeichert wurde.",
    "Tallenna asetustiedosto ja käynnistä palvelin uudelleen.",
]


def test_swahili_ranked_below_another_label_is_kept_by_its_own_probability_and_other_text_still_caught():
    for text in SWAHILI_BELOW_TOP:
        assert detect(text)[0] != "sw", text  # the cause: the top-label rule drops it whatever the floor
        assert 0.01 <= probability(text, "sw") < detect(text)[1], text
    sw = LanguageId("sw")
    assert [sw.filter(doc(t, "sw", i)) for i, t in enumerate(SWAHILI_BELOW_TOP)] == [True] * len(SWAHILI_BELOW_TOP)
    # English, German and Finnish in the Swahili source are still removed, and rerouted where the stage routes them
    assert all(sw.filter(doc(t, "sw", i)) == (False, "wrong_language") for i, t in enumerate(OTHER_SHORT))
    routed = LanguageId("sw", mislabelled="reroute", routes={"en": "web-en", "de": "web-de", "fi": "web-fi"})
    moved = [doc(t, "sw", i) for i, t in enumerate(OTHER_SHORT)]
    assert all(routed.filter(d) is True for d in moved)
    assert [d.metadata["source"] for d in moved] == ["web-en", "web-en", "web-de", "web-fi"]
    # the top-label rule (any_rank without Swahili) drops them, whatever the floor
    top_only = LanguageId("sw", {"sw": 0.001}, any_rank=())
    assert all(top_only.filter(doc(t, "sw")) == (False, "wrong_language") for t in SWAHILI_BELOW_TOP)
    # a recipe's floor for Swahili is on its own probability too; other languages keep the top-label rule
    kept = [LanguageId("sw", {"sw": 0.1}).filter(doc(t, "sw")) is True for t in SWAHILI_BELOW_TOP]
    assert kept == [probability(t, "sw") >= 0.1 for t in SWAHILI_BELOW_TOP] == [True, False, True, False]
    assert LanguageId("de").any_rank("de") is False and sw.any_rank("sw") is True


def test_a_recipe_names_the_languages_lid_176_ranks_below_others():
    """language_id_any_rank reaches the filter the clean phase builds (with Swahili's measured rule kept)."""
    args = MixtureArguments(language_id_any_rank=["yo"], language_id_min_score={"yo": 0.02})
    yoruba = LanguageId.for_source("yo", args)
    assert yoruba.any_rank("yo") and yoruba.any_rank("sw") and not yoruba.any_rank("en")
    assert yoruba.floor("yo") == 0.02 and yoruba.floor("sw") == 0.01 and yoruba.floor("en") == 0.1
    english = "Save the config file and run the build again before you push."
    assert probability(english, "yo") < 0.02
    assert yoruba.filter(doc(english, "yo")) == (False, "wrong_language")
    assert not LanguageId.for_source("yo", MixtureArguments()).any_rank("yo")


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


def doc_yaml_blocks() -> dict[str, dict]:
    """The YAML blocks of docs/adapting.md's languages half, by the file their first line names (``# cat.yaml``)."""
    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "adapting.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n# (\S+)\n(.*?)```", text.split("## Your base model")[0], flags=re.S)
    return {name: yaml.safe_load(body) for name, body in blocks}


def paste(path: Path, keys: dict) -> None:
    import yaml

    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config.update(keys)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.mark.slow
def test_the_adapting_page_walked_end_to_end_on_german_korean_and_swahili(recipe_copy, tmp_path, cache_dir):
    """docs/adapting.md, step by step, on three languages the project ships nothing for: the tiny twin copied,
    the corpora, red-team rows and test prompts added, the page's YAML pasted with no other key, then validate
    and the whole pipeline (data, CAP, CAT with the red-team rows, safety SFT, eval, publish). Each source reads
    exactly its file, >= 85% of each language's clean documents survive, planted profanity goes where a list
    exists, the offline judge refuses de/ko/sw by name, and no report gives a number it could not measure."""
    from conftest import cli

    for path in sorted((FIXTURES / "data").glob("*.jsonl")):  # steps 1 and 7: the page's sample files
        shutil.copy(path, recipe_copy / "data" / path.name)
    page = doc_yaml_blocks()
    assert set(page) == {"cap.yaml", "cat.yaml", "sft.yaml", "eval.yaml"}, set(page)
    for name, keys in page.items():  # steps 2 and 7: the page's YAML, as written
        paste(recipe_copy / name, keys)
    for name in ("cap.yaml", "sft.yaml"):  # "the same contamination_sources in cap.yaml and sft.yaml"
        paste(recipe_copy / name, {"contamination_sources": page["cat.yaml"]["contamination_sources"]})
    pipeline = recipe_copy / "pipeline.yaml"  # "the instruct stage is left out ... inputs: [cap, cat, sft]"
    import yaml

    stages = [s for s in yaml.safe_load(pipeline.read_text(encoding="utf-8"))["stages"] if s["name"] != "instruct"]
    next(s for s in stages if s["name"] == "eval")["inputs"] = ["cap", "cat", "sft"]
    paste(pipeline, {"stages": stages})

    checked = cli("validate", str(recipe_copy))  # step 4
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "sw: no toxicity list: the toxicity filter does nothing for sw" in checked.stderr
    assert "de: no" not in checked.stderr and "ko: no" not in checked.stderr
    judge_line = "eval.yaml: safety_judge: safety not measured in de, ko, sw (no judge for them): the judge 'refusal'"
    assert judge_line in checked.stderr, checked.stderr[-2000:]

    out = tmp_path / "run"  # steps 6 and 7
    ran = cli("-q", "run", str(recipe_copy), "--output-dir", str(out))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert not re.search(r"\d+%\||(doc|it)/s\]", ran.stderr), ran.stderr[-500:]  # -q: no progress bar at all

    report = json.loads((out / "cap" / "data" / "filter_report.json").read_text())
    by_name = {row["name"]: row for row in report["sources"]}
    assert set(by_name) == {"de", "ko", "sw", "code"}
    for lang in NEW:
        data = rows(recipe_copy / "data" / f"{lang}.jsonl")
        row = by_name[lang]
        assert row["docs_in"] == len(data) and row["language"] == lang  # its file, and only its file
        steps = {s["step"]: s for s in row["steps"]}
        has_list = profile(lang).toxic_words_from is not None
        assert steps["toxic_words"]["removed_docs"] == (1 if has_list else 0), (lang, row["steps"])
        # Korean's planted document hashes into the held-out quarter: removed from the held-out text all the same
        assert steps["toxic_words"]["removed_heldout_docs"] == (lang == "ko"), (lang, row["steps"])
        removed = sum(s.get("removed_docs", 0) for s in row["steps"])
        clean = len(data) - 1  # one planted profane document per language
        assert (clean - (removed - (1 if has_list else 0))) / clean >= 0.85, (lang, row["steps"])
    assert by_name["code"]["docs_in"] == len(rows(recipe_copy / "data" / "code.jsonl"))
    assert "sw: no toxicity list: the toxicity filter does nothing for sw" in report["notes"]
    cat = {
        row["name"]: row for row in json.loads((out / "cat" / "data" / "filter_report.json").read_text())["sources"]
    }
    for lang in NEW:  # the red-team rows in CAT's mixture, each file whole, under its language
        assert cat[f"redteam_{lang}"]["docs_in"] == 6 and cat[f"redteam_{lang}"]["language"] == lang
    assert (out / "sft" / "model" / "model.safetensors").is_file()

    variants = ("aurora-m-tiny-base", "aurora-m-tiny-redteamed", "aurora-m-tiny-safety-sft")
    for variant in variants:
        results = json.loads((out / "eval" / variant / "results.json").read_text())
        assert set(results["perplexity"]) == {*NEW, "code"}, results["perplexity"]  # held out in every language
        safety = results["safety"]
        assert safety["not_measured"] == {lang: f"no judge for {lang}" for lang in NEW}
        assert safety["refusal_rate"] == {} and safety["over_refusal"] == {}  # no number it could not measure
        assert safety["attack_success"] == {"plain": {}}
        assert {lang: safety["n"]["red_team"][lang]["all"] for lang in NEW} == {lang: 3 for lang in NEW}
        assert "refusals" not in safety["response_loss"]  # prompts without a reference response: no loss either
        card = (out / "publish" / variant / "README.md").read_text(encoding="utf-8")
        assert "German, Korean and Swahili" in card and "Finnish" not in card
        assert "Not measured, so no rate: de (no judge for de; 3 red-team prompts)" in card, card
        section = card.split("\n## Safety")[1].split("\n## ")[0]
        assert not re.search(r"\d\.\d\d", section.split("agreement with human labels")[0]), section  # no rate
        assert "| language |" not in section and "| template |" not in section  # no table of nothing
    table = (out / "eval" / "safety_transfer.md").read_text(encoding="utf-8")
    assert "| de | ko | sw |" in table and "not measured (no judge for sw)" in table
    assert not re.search(r"\d\.\d\d", table.split("Judge:")[0]), table  # not a single rate in it


def test_a_language_setting_for_a_language_the_stage_does_not_have_is_one_line(recipe_copy):
    from aurora_m.errors import RecipeError
    from aurora_m.stage_checks import check_stage_config

    from conftest import edit_yaml

    cap = recipe_copy / "cap.yaml"
    edit_yaml(cap, "mixture_seed: 1234", "mixture_seed: 1234\nlanguage_settings: {ko: {c4: {}}}")
    with pytest.raises(RecipeError, match=r"language_settings.ko: expected a prose language of this stage's mix"):
        check_stage_config(cap, "pretrain")
    edit_yaml(cap, "{ko: {c4: {}}}", "{fi: {c4: {min_sentences: 2}}}")
    with pytest.raises(RecipeError, match=r"language_settings.fi: unknown setting\(s\) for quality filter 'c4'"):
        check_stage_config(cap, "pretrain")


def test_pii_masking_is_on_for_web_text_and_off_for_curated_help_unless_the_source_says(tmp_path):
    """A red-team refusal's crisis helpline number stays a number in CAT's data; web text is masked."""
    from aurora_m.args import MixtureArguments
    from aurora_m.data.clean import PiiAnonymizer
    from aurora_m.data.clean_pipeline import _clean_pipeline
    from aurora_m.layout import DatasetDir

    redteam = tmp_path / "redteam.jsonl"
    redteam.write_text(json.dumps({"instruction": "?", "response": "Call +358 9 2525 0111 now."}) + "\n")
    web = tmp_path / "en.jsonl"
    web.write_text(json.dumps({"text": "Call +358 40 123 4567."}) + "\n")
    args = MixtureArguments(mixture=[], train_tokens=1)

    def masks(**source) -> bool:
        from aurora_m.source_spec import SourceSpec

        spec = SourceSpec.from_config(source, list_key="mixture")
        steps = _clean_pipeline(spec, args, DatasetDir(tmp_path / "d"), "tok.json", {}, "cap.yaml", [])
        return any(isinstance(s, PiiAnonymizer) for s in steps)

    assert masks(name="en", path=str(web))
    assert not masks(name="redteam", path=str(redteam), format="instruction", language="en")
    assert masks(name="redteam", path=str(redteam), format="instruction", language="en", pii_masking=True)
    assert not masks(name="en", path=str(web), pii_masking=False)


def test_the_card_names_the_languages_the_variant_trained_on():
    """A de/ko/sw model's card says German, Korean and Swahili, not the paper's five."""
    from types import SimpleNamespace

    from aurora_m.hub.card import _names, trained_languages

    mixture = [{"name": lang, "path": f"data/{lang}.jsonl"} for lang in (*NEW, "code")]
    mixture.append({"name": "redteam", "path": "data/redteam.jsonl", "format": "instruction", "language": "en"})
    lineage = [SimpleNamespace(config={"mixture": mixture}), SimpleNamespace(config={"sft_sources": []})]
    assert trained_languages(lineage) == ["de", "ko", "sw"]
    assert _names(trained_languages(lineage)) == "German, Korean and Swahili"
    paper = [{"name": lang, "path": f"data/{lang}.jsonl"} for lang in ("vi", "en", "ja", "fi", "hi")]
    assert _names(trained_languages([SimpleNamespace(config={"mixture": paper})])) == (
        "English, Finnish, Hindi, Japanese and Vietnamese"
    )


def test_the_cards_safety_section_says_what_was_not_measured_and_where_agreement_is_unknown():
    """A model judge's rates in German (its agreement measured on en only), Korean not read by any judge: the card
    gives de's rate with 'agreement not known in de', and ko as not measured, with no rate."""
    from importlib import resources

    from jinja2 import Template

    from aurora_m.hub.card import _safety_facts

    safety = {
        "judge": "chat:org/judge",
        "judge_agreement": {"test": {"agreement": 0.9, "n": 20, "by_language": {"en": {"agreement": 0.9, "n": 20}}}},
        "refusal_rate": {"en": {"cyber": 1.0, "all": 1.0}, "de": {"cyber": 0.5, "all": 0.5}},
        "attack_success": {"plain": {"en": 0.0, "de": 0.5}, "role_play": {}},
        "n": {"red_team": {"en": {"all": 2, "cyber": 2}, "de": {"all": 2, "cyber": 2}, "ko": {"all": 3, "cyber": 3}}},
        "missing": {"red_team": [], "benign": [], "categories": {}, "verdicts": {}},
        "not_measured": {"ko": "no judge for ko"},
    }
    template = (resources.files("aurora_m.hub") / "card_template.md").read_text(encoding="utf-8")
    section = template.split("{% if safety %}", 1)[1].split("This variant was not run through the safety suite")[0]
    section = section.rsplit("{% else %}", 1)[0]  # the {% if safety %} branch of the template, alone
    text = Template(section).render(safety=_safety_facts(safety), plot={}, assets={})
    assert "| de | 2 | 0 | 0.50 | 0.50 |" in text and "| ko |" not in text
    assert "Not measured, so no rate: ko (no judge for ko; 3 red-team prompts)" in text
    assert "agreement with human labels is not known in de: the labelled sets have no responses there" in text
    assert "| role_play |" not in text  # a template measured nowhere has no row


def test_the_transfer_table_shows_the_recipes_languages_not_the_papers():
    from aurora_m.evaluation.safety.report import transfer_table

    result = {
        "refusal_rate": {"de": {"all": 0.5}, "ko": {"all": 1.0}},
        "over_refusal": {"de": 0.0},
        "missing": {"red_team": ["sw"], "benign": ["ko", "sw"], "categories": {}},
        "n": {"red_team": {"de": {"all": 2}, "ko": {"all": 1}, "sw": {"all": 0}}},
    }
    header = transfer_table({"base": result}).splitlines()[2]
    assert header == "| variant | de | ko | sw | mean de/ko/sw |", header  # no English: nothing to compare with
    assert "| base | 0.50 (2) | 1.00 (1) | missing | 0.75 |" in transfer_table({"base": result})
    assert "minus English" not in transfer_table({"base": result})
    unread = {"n": {"red_team": {"fr": {"all": 3}, "yo": {"all": 2}}}, "not_measured": {"fr": "no judge for fr"}}
    unread["not_measured"]["yo"] = "no judge for yo"
    row = transfer_table({"base": unread}).splitlines()[4]
    assert row == (
        "| base | not measured (no judge for fr) | not measured (no judge for yo) "
        "| not measured (no judge for fr/yo) |"
    ), row
    english = {**result, "refusal_rate": {**result["refusal_rate"], "en": {"all": 1.0}}}
    english["n"] = {"red_team": {**result["n"]["red_team"], "en": {"all": 4}}}
    assert "| variant | en | de | ko | sw | mean de/ko/sw | vs en |" in transfer_table({"base": english})


@pytest.mark.parametrize("languages,english", [(["en", "fi"], True), (["fr", "th", "yo"], False)])
def test_the_cards_statements_about_english_appear_only_for_a_model_trained_on_it(languages, english):
    """'The red-team data is mostly English' and 'languages other than English are weaker' are the paper's facts:
    a fr/th/yo model's card says neither."""
    from importlib import resources

    from jinja2 import Template

    from aurora_m.hub.card import _names

    template = (resources.files("aurora_m.hub") / "card_template.md").read_text(encoding="utf-8")
    parts = re.findall(r"\{% if has_english %\}.*?\{% endif %\}", template, re.S)
    assert len(parts) == 2, parts
    text = Template("\n".join(parts)).render(
        has_english="en" in languages,
        language_names=_names(languages),
        other_languages=_names([lang for lang in languages if lang != "en"]),
    )
    assert ("mostly English" in text) is english and ("other than English" in text) is english
    if not english:
        assert "French" in text and "English" not in text
