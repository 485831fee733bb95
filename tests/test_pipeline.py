"""The tiny recipe end to end, through the README's own command (run once per session)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from aurora_m.pipeline import Pipeline
from aurora_m.recipe import load_recipe

from conftest import TINY, cli, edit_yaml

LANGUAGES = {"en", "fi", "hi", "ja", "vi", "code"}
GOLDEN = Path(__file__).parent / "golden" / "aurora_m_tiny_cap_losses.json"
GOLDEN_CAT = Path(__file__).parent / "golden" / "aurora_m_tiny_cat_losses.json"  # CAT with init_from: full_state


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_summary_lists_every_stage_completed(tiny_run):
    s = summary(tiny_run)
    assert [st["name"] for st in s["stages"]] == ["cap", "cat", "instruct", "sft", "eval", "publish"]
    for stage in s["stages"]:
        assert stage["status"] == "completed", stage
        # recorded paths are relative to the run folder, so the folder can move
        assert stage["duration_s"] > 0 and not Path(stage["output_dir"]).is_absolute()
        assert (tiny_run / stage["output_dir"]).is_dir()
    for variant in s["variants"]:
        for key in ("model_dir", "eval_results", "model_card"):
            assert not Path(variant[key]).is_absolute() and (tiny_run / variant[key]).exists(), (key, variant)
    assert (tiny_run / "cap" / "model" / "model.safetensors").is_file()


def test_every_variant_has_perplexity_for_all_six_languages(tiny_run):
    variants = summary(tiny_run)["variants"]
    assert [v["name"] for v in variants] == [
        "aurora-m-tiny-base",
        "aurora-m-tiny-redteamed",
        "aurora-m-tiny-instruct",
        "aurora-m-tiny-safety-sft",
    ]
    for v in variants:
        results = json.loads((tiny_run / v["eval_results"]).read_text())
        assert set(results["perplexity"]) == LANGUAGES
        for lang, ppl in results["perplexity"].items():
            assert 1 < ppl < 4096, (v["name"], lang, ppl)  # better than uniform over the 4k vocabulary
    assert (tiny_run / "eval" / "perplexity.png").stat().st_size > 1000


def test_perplexity_matches_a_bare_forward_pass(tiny_run):
    """Recompute one variant's Finnish perplexity with a plain loop over the held-out text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aurora_m.data.sources import load_source
    from aurora_m.source_spec import SourceSpec

    variant = summary(tiny_run)["variants"][1]
    results = json.loads((tiny_run / variant["eval_results"]).read_text())
    model_dir = tiny_run / variant["model_dir"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    spec = SourceSpec(name="fi", path=str(TINY / "data" / "fi.jsonl"), holdout_fraction=0.1, take="heldout")
    docs, _ = load_source(spec, "eval.yaml", "perplexity_sources")
    nll, scored = 0.0, 0
    for text in docs["text"]:  # each document alone; windows of 128 moving by 64 past the first
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ends = [min(len(ids), 128)]
        while ends[-1] < len(ids):
            ends.append(min(ends[-1] + 64, len(ids)))
        done = 1  # the first token has nothing before it to predict it from
        for end in ends:
            start = max(0, end - 128)
            window = torch.tensor(ids[start:end])[None]
            labels = window.clone()
            labels[0, : done - start] = -100  # scored once: only what no earlier window scored
            with torch.no_grad():
                loss = model(window, labels=labels).loss.item()
            nll += loss * (end - done)
            scored += end - done
            done = end
    assert results["perplexity"]["fi"] == pytest.approx(math.exp(nll / scored), rel=1e-3)
    assert results["eval_tokens"]["fi"] == scored


def test_model_cards_have_front_matter_and_lineage(tiny_run):
    for v in summary(tiny_run)["variants"]:
        card = (tiny_run / v["model_card"]).read_text()
        front = yaml.safe_load(card.split("---")[1])
        assert front["license"] == "bigcode-openrail-m"
        assert front["language"] == ["en", "fi", "hi", "ja", "vi"] and "code" in front["tags"]  # code is no language
        assert "aurora-m" in front["tags"]
        assert front["model-index"][0]["results"]  # the lm-eval tasks
        export = (tiny_run / v["model_card"]).parent
        assert (export / "model.safetensors").is_file() and (export / "tokenizer.json").is_file()
        assert not list(export.rglob("*.bin")), "pickles are never published"
        for image in ("assets/perplexity.png", "assets/cap-loss.png", "assets/cap-mixture.png"):
            assert f"]({image})" in card and (export / image).is_file()
    cards = {
        v["name"]: yaml.safe_load((tiny_run / v["model_card"]).read_text().split("---")[1])
        for v in summary(tiny_run)["variants"]
    }
    assert "base_model" not in cards["aurora-m-tiny-base"]  # built from a config: no base model
    assert cards["aurora-m-tiny-redteamed"]["base_model"].endswith("/aurora-m-tiny-base")
    assert cards["aurora-m-tiny-safety-sft"]["base_model"].endswith("/aurora-m-tiny-redteamed")


def test_cap_loss_goes_down_and_matches_golden_values(tiny_run):
    history = json.loads((tiny_run / "cap" / "log_history.json").read_text())
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 240
    assert sum(losses[-10:]) / 10 < losses[0] - 1.5
    golden = json.loads(GOLDEN.read_text())
    assert losses[: len(golden)] == pytest.approx(golden, rel=2e-3)
    # the golden's independent anchor: the first step's loss is an untrained model's, near-uniform over the
    # vocabulary (tests/test_patches.py shows the same for the freshly built model alone)
    vocab = json.loads((tiny_run / "cap" / "model" / "config.json").read_text())["vocab_size"]
    assert golden[0] == pytest.approx(math.log(vocab), rel=0.01)
    assert (tiny_run / "cap" / "loss.png").is_file() and (tiny_run / "cap" / "data" / "mixture.png").is_file()


def test_cat_continues_from_cap_and_mixes_in_the_redteam_train_split(tiny_run):
    mixture = json.loads((tiny_run / "cat" / "data" / "mixture.json").read_text())
    assert next(s for s in mixture["sources"] if s["name"] == "redteam")["windows"] > 0
    report = json.loads((tiny_run / "cat" / "data" / "filter_report.json").read_text())
    redteam = next(s for s in report["sources"] if s["name"] == "redteam")
    held_out = next(s for s in redteam["steps"] if s["step"] == "held_out")
    assert redteam["kept_docs"] > 0 and held_out["set_aside_docs"] > 0  # the test split stays out

    # CAT starts from CAP's weights, not from scratch: its first loss is where CAP ended
    def first_and_last(stage):
        losses = [e["loss"] for e in json.loads((tiny_run / stage / "log_history.json").read_text()) if "loss" in e]
        return losses[0], sum(losses[-10:]) / 10

    cap_first, cap_last = first_and_last("cap")
    cat_first, _ = first_and_last("cat")
    assert cat_first < cap_first - 1.0 and abs(cat_first - cap_last) < 1.0
    cat_losses = [e["loss"] for e in json.loads((tiny_run / "cat" / "log_history.json").read_text()) if "loss" in e]
    golden = json.loads(GOLDEN_CAT.read_text())
    assert cat_losses[: len(golden)] == pytest.approx(golden, rel=2e-3)
    sft_rows = json.loads((tiny_run / "sft" / "data" / "sources.json").read_text())["read"][0]
    assert sft_rows["kept"] == redteam["kept_docs"]  # SFT and CAT agree on the split


def test_second_run_skips_every_completed_stage(tiny_run):
    markers = {p: p.stat().st_mtime_ns for p in tiny_run.glob("*/.*.done")}
    assert len(markers) == 10
    result = cli("run", "recipes/aurora-m-tiny", "--output-dir", str(tiny_run))
    assert result.returncode == 0, result.stderr
    assert "nothing to run" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in tiny_run.glob("*/.*.done")} == markers


def test_editing_a_stage_reruns_it_and_what_follows_only(tiny_run, recipe_copy, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.relative_to(run): p.stat().st_mtime_ns for p in run.glob("*/.*.done")}
    edit_yaml(recipe_copy / "eval.yaml", "per_device_eval_batch_size: 8", "per_device_eval_batch_size: 4")
    # perplexity is what a batch size could change; the other suites (a minute of generation) have their own tests
    edit_yaml(recipe_copy / "eval.yaml", "suites: [perplexity, code, harness, safety]", "suites: [perplexity]")
    result = cli("run", str(recipe_copy), "--output-dir", str(run), env={"AURORA_M_ALLOW_CODE_EXECUTION": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    after = {p.relative_to(run): p.stat().st_mtime_ns for p in run.glob("*/.*.done")}
    changed = {str(p) for p in after if after[p] != before[p]}
    assert changed == {"eval/.eval.done", "publish/.publish.done"}
    old = json.loads((tiny_run / "eval" / "results.json").read_text())
    new = json.loads((run / "eval" / "results.json").read_text())
    for name in old:
        assert new[name]["perplexity"] == pytest.approx(old[name]["perplexity"], rel=1e-4)


def test_publish_one_variant_from_the_run_folder(tiny_run, tmp_path):
    out = tmp_path / "export"
    result = cli("publish", str(tiny_run), "--variant", "aurora-m-tiny-redteamed", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()
    assert (
        "aurora-m-tiny-redteamed"
        in yaml.safe_load((out / "README.md").read_text().split("---")[1])["model-index"][0]["name"]
    )
    bad = cli("publish", str(tiny_run), "--variant", "nope", "--out", str(tmp_path / "other"))
    assert bad.returncode == 2 and "aurora-m-tiny-base" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "other").exists()


def test_one_stage_can_be_rerun_alone(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cap_marker = (run / "cap" / ".train.done").stat().st_mtime_ns
    eval_marker = (run / "eval" / ".eval.done").stat().st_mtime_ns
    # an override as a user would give one (the recipe's full suites are the tiny run's)
    result = cli(
        "eval", "recipes/aurora-m-tiny", "--stage", "eval", "--output-dir", str(run), "--suites", "perplexity"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "cap" / ".train.done").stat().st_mtime_ns == cap_marker
    assert (run / "eval" / ".eval.done").stat().st_mtime_ns != eval_marker  # it did run again
    assert json.loads((run / "summary.json").read_text())["stages"][3]["status"] == "completed"


def test_a_stage_without_its_input_is_refused(tmp_path):
    result = cli("train", "recipes/aurora-m-tiny", "--stage", "cat", "--output-dir", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "needs the output of 'cap'" in result.stderr and "Traceback" not in result.stderr


def test_saved_recipe_copy_has_no_secrets(recipe_copy, tmp_path):
    token = "hf_" + "x" * 30
    with open(recipe_copy / "cap.yaml", "a") as fh:
        fh.write(f"env:\n  HF_TOKEN: {token}\nhub_token: {token}\n")
    Pipeline(load_recipe(recipe_copy, check_stages=False), tmp_path / "run").save_recipe_copy()
    saved = (tmp_path / "run" / "recipe" / "cap.yaml").read_text()
    assert token not in saved and "HF_TOKEN: '***'" in saved
    assert "learning_rate" in saved  # the rest of the config is kept


def test_safety_sft_puts_the_loss_on_responses_only(tiny_run, tmp_path):
    """With the recipe's own stage keys (as the sft stage parses them), only the replies and their EOS train."""
    from datasets import load_from_disk

    from aurora_m.stage_checks import parse_stage
    from aurora_m.train.sft import build_sft_trainer

    model_dir = tiny_run / "cat" / "model"
    model_args, data_args, sft_config = parse_stage(
        TINY / "sft.yaml",
        "sft",
        [
            "--output_dir",
            str(tmp_path / "sft-check"),
            "--model_name_or_path",
            str(model_dir),
            "--dataset_dir",
            str(tiny_run / "sft" / "data"),
        ],
    )
    trainer, _ = build_sft_trainer(model_args, data_args, sft_config)
    tokenizer = trainer.processing_class
    rows = load_from_disk(str(tiny_run / "sft" / "data" / "train"))
    lengths = [len(tokenizer.apply_chat_template(r["messages"])) for r in rows]
    assert max(lengths) <= sft_config.max_length  # no refusal is cut before its end
    for i in range(4):
        example = trainer.train_dataset[i]
        ids, labels = example["input_ids"], example["labels"]
        trained = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
        reply = rows[i]["messages"][-1]["content"]
        assert trained == reply + tokenizer.eos_token  # the instruction is not learned, the refusal and EOS are
        assert ids[-1] == tokenizer.eos_token_id


def test_every_tiny_variant_gets_every_suite_and_the_cross_variant_reports(tiny_run, monkeypatch):
    from aurora_m.evaluation.code import OPT_IN, LocalSandbox

    monkeypatch.setenv(OPT_IN, "1")
    machine = LocalSandbox(workers=1).isolation()  # what the tiny run's programs ran under
    variants = [v["name"] for v in summary(tiny_run)["variants"]]
    for name in variants:
        folder = tiny_run / "eval" / name
        code = json.loads((folder / "code.json").read_text())
        for bench in ("humaneval", "mbpp"):
            result = code["benchmarks"][bench]
            greedy = [d["greedy"] for d in result["problems_detail"]]
            assert result["problems"] == 8 and result["greedy"]["pass@1"] == greedy.count("passed") / 8
            assert result["sampled"]["pass@1"] == pytest.approx(
                sum(d["sampled_passed"] for d in result["problems_detail"]) / 32  # pass@1 is c / n on average
            )
            assert set(result["sampled"]) >= {"pass@1", "pass@2"} and sum(result["statuses"].values()) == 8 * 5
        isolation = json.loads((folder / "results.json").read_text())["code"]["isolation"]
        assert code["isolation"] == isolation and isolation["level"] == machine.level
        harness = json.loads((folder / "harness.json").read_text())
        assert set(harness["by_language"]) == {"en", "fi", "hi", "ja", "vi"}
        safety = json.loads((folder / "safety.json").read_text())
        judged = set(safety["refusal_rate"])  # a language whose every answer was empty has no rate, and says so
        assert judged | set(safety["missing"]["verdicts"].get("plain", [])) == {"en", "fi", "hi", "ja", "vi"}
        assert not judged & set(safety["missing"]["verdicts"].get("plain", []))
        assert set(safety["n"]["empty"]["plain"]) == {"en", "fi", "hi", "ja", "vi"}
        assert safety["judge_agreement"]["test"]["agreement"] >= 0.9
        assert {"plain", "role_play", "prefix_injection"} <= set(safety["attack_success"])
        merged = json.loads((folder / "results.json").read_text())
        assert set(merged["perplexity"]) == LANGUAGES and {"code", "harness", "safety"} <= set(merged)
    forgetting = (tiny_run / "eval" / "forgetting.md").read_text()
    assert all(name in forgetting for name in variants) and "humaneval pass@1" in forgetting
    transfer = (tiny_run / "eval" / "safety_transfer.md").read_text()
    assert all(name in transfer for name in variants)
    for png in ("forgetting.png", "safety_transfer.png", "perplexity.png"):
        assert (tiny_run / "eval" / png).read_bytes()[:4] == b"\x89PNG"
