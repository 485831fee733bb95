"""``aurora-m rehearse`` and the recorded Hub it reads offline.

The recorded Hub is the true boundary (the Hub's HTTP API behind huggingface_hub's client factory, as
tests/fake_hub.py fakes it for pushes): ``datasets`` runs its own resolution and streaming code against it, so a
repo that ships a loading script is refused exactly as the real Hub's answers make datasets refuse it.
The full rehearsal of the 15B recipe runs once per module and its report is shared by the assertions.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aurora_m.errors import RecipeError
from aurora_m.rehearsal.hub import RecordedHub, load_snapshots
from aurora_m.source_spec import SourceSpec

from conftest import ROOT, TINY, cli

RECIPE = ROOT / "recipes" / "aurora-m-15b"
OPT_IN = {"AURORA_M_ALLOW_CODE_EXECUTION": "1"}  # the code suite may run (checked before any training)
HUB_ID = re.compile(r"dataset: ([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)")


def recipe_hub_ids() -> set[str]:
    return {m for f in ROOT.glob("recipes/*/*.yaml") for m in HUB_ID.findall(f.read_text(encoding="utf-8"))}


# ----------------------------------------------------------------------------- the recorded Hub


def test_every_hub_source_of_the_real_recipes_is_recorded_with_where_its_facts_came_from():
    repos = load_snapshots()
    assert recipe_hub_ids() <= set(repos), sorted(recipe_hub_ids() - set(repos))
    for repo in repos.values():
        for fact in ("columns", "license"):
            said = next((v for k, v in repo.sources.items() if k.startswith(fact)), "")
            # a URL or repo path it was read from, or an explicit "not verified" / "not found"
            assert re.search(r"https?://|recipes/|aurora_m/|not verified|not found", said, re.I), (repo.repo_id, fact)


def test_every_recorded_fact_cites_a_stored_page_or_says_it_is_not_verified():
    """A fact the recorded Hub serves as verified names the page or file it was read from (a URL: the card, the
    tree, a commit, or upstream code at a commit); the recipe's own comments are no source for a Hub fact."""
    unsourced = [
        (repo.repo_id, fact)
        for repo in load_snapshots().values()
        for fact, said in repo.sources.items()
        if not re.search(r"not verified|not found", said, re.I) and not re.search(r"https://\S+/\S+", said)
    ]
    assert not unsourced, unsourced
    facts = load_snapshots()["wikimedia/wikipedia"].facts()
    assert "columns" not in facts["unverified"] and facts["license"] == ["cc-by-sa-3.0", "gfdl"]


def test_the_shipped_base_model_config_matches_the_recorded_hub_facts():
    """aurora_m/configs/starcoderplus.json against the config copies of bigcode/starcoderplus that stored pages show
    (starcoderplus.sources.yaml): a wrong head count or vocabulary size fails here, not on the cluster."""
    configs = ROOT / "aurora_m" / "configs"
    facts = yaml.safe_load((configs / "starcoderplus.sources.yaml").read_text(encoding="utf-8"))
    shipped = json.loads((configs / "starcoderplus.json").read_text(encoding="utf-8"))
    assert {k: shipped.get(k) for k in facts["config"]} == facts["config"]
    assert all(re.search(r"not verified|https://\S+/\S+", said, re.I) for said in facts["sources"].values())


def test_snapshot_files_are_schema_true():
    import pyarrow as pa
    import pyarrow.parquet as pq

    for repo in load_snapshots().values():
        for group in repo.groups:
            features = group["features"] or repo.features
            for name in group["files"][:1]:
                data = repo.files[name]
                if name.endswith(".parquet"):
                    table = pq.read_table(pa.BufferReader(data))
                    assert table.column_names == list(features), repo.repo_id
                    assert table.num_rows == len(group["rows"]) > 0
                elif name.endswith(".csv"):
                    rows = list(csv.DictReader(io.StringIO(data.decode(group["encoding"] or "utf-8"))))
                    assert len(rows) == len(group["rows"]) > 0
                else:
                    text = gzip.decompress(data) if name.endswith(".gz") else data
                    rows = [json.loads(line) for line in text.decode().splitlines()]
                    assert rows and all(set(r) == set(features) for r in rows), repo.repo_id


def test_a_repo_with_a_loading_script_is_refused_by_id_and_read_by_hf_path(tmp_path):
    from datasets import load_dataset

    with RecordedHub(cache_dir=tmp_path) as hub:
        with pytest.raises(RuntimeError, match=r"Dataset scripts are no longer supported, but found xP3\.py"):
            load_dataset("bigscience/xP3", data_files="en/merged_en.jsonl", split="train", streaming=True)
        stream = load_dataset(
            "json", data_files="hf://datasets/bigscience/xP3/en/merged_en.jsonl", split="train", streaming=True
        )
        rows = list(itertools.islice(stream, 2))
    assert [sorted(r) for r in rows] == [["inputs", "targets"]] * 2
    # the card, the script's probe and the data file (read twice: datasets opens it to infer, then streams it)
    assert 0 < hub.bytes_served["bigscience/xP3"] <= 2 * sum(map(len, hub.repos["bigscience/xP3"].files.values()))


def test_a_config_streams_its_own_files_only_and_the_bytes_are_counted(tmp_path):
    from datasets import load_dataset

    with RecordedHub(cache_dir=tmp_path) as hub:
        stream = load_dataset("uonlp/CulturaX", "fi", split="train", streaming=True)
        first = next(iter(stream))
    assert sorted(first) == ["source", "text", "timestamp", "url"]
    assert {f.split("/")[0] for f in hub.files_read["uonlp/CulturaX"] if f.endswith(".parquet")} == {"fi"}
    assert hub.bytes_served["uonlp/CulturaX"] > 0


def test_a_gated_repo_without_access_is_one_line(tmp_path):
    from aurora_m.rehearsal.sources import sample_source

    spec = SourceSpec(name="redteam", dataset="aurora-m/biden-harris-redteam", format="instruction")
    with RecordedHub(cache_dir=tmp_path, access={"aurora-m/biden-harris-redteam": False}) as hub:
        with pytest.raises(RecipeError, match=r"sft\.yaml: sft_sources\[0\]\.dataset: .*gated"):
            sample_source(spec, "sft", "sft_sources", "sft.yaml", "sft_sources[0]", 5, 2**20, hub)


def test_a_missing_column_is_one_line_naming_the_source_key(tmp_path):
    from aurora_m.rehearsal.sources import sample_source

    spec = SourceSpec(name="helpsteer", dataset="nvidia/HelpSteer", format="instruction", instruction_field="question")
    with RecordedHub(cache_dir=tmp_path) as hub:
        with pytest.raises(
            RecipeError, match=r"mixture\[3\]\.instruction_field: column 'question' not in nvidia/Help"
        ):
            sample_source(spec, "cat", "mixture", "cat.yaml", "mixture[3]", 5, 2**20, hub)


# ----------------------------------------------------------------------------- the rehearsal, end to end


def variant(dst: Path, file: str, old: str, new: str) -> Path:
    """A copy of the real recipe with one edit (which must apply)."""
    shutil.copytree(RECIPE, dst)
    text = (dst / file).read_text()
    assert old in text, (file, old)
    (dst / file).write_text(text.replace(old, new, 1))
    return dst


def refused(result, out: Path) -> tuple[str, dict]:
    """The one line a refused rehearsal prints, and its report's stages by name."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    report = json.loads((out / "rehearsal.json").read_text())
    return line, {s["name"]: s for s in report["stages"]}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, cache_dir):
    """One offline rehearsal of the 15B recipe (the documented command: every stage in miniature), shared by the
    assertions below. Opted in to running model-written code in the sandbox (the code suite), as the docs say."""
    out = tmp_path_factory.mktemp("rehearsal") / "out"
    env = {"AURORA_M_ALLOW_CODE_EXECUTION": "1"}
    result = cli("rehearse", "recipes/aurora-m-15b", "--output-dir", str(out), "--sample-rows", "50", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "rehearsal.json").read_text()), out, result


@pytest.mark.slow
def test_every_stage_completes_in_miniature_offline(rehearsal):
    """Validated, read, cleaned, then trained / evaluated / published in miniature through the real pipeline."""
    report, out, result = rehearsal
    names = ["cap", "cat", "instruct", "sft", "eval", "publish"]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == dict.fromkeys(names, "completed")
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == names
    table = (out / "rehearsal.md").read_text()
    assert all(f"| {s['name']} | {s['kind']} | completed |" in table for s in report["stages"])
    run = out / "run"
    for name in ("cap", "cat", "instruct", "sft"):  # each trained: finite losses from its trainer, a saved model
        stage = stages[name]
        assert stage["losses"]["steps"] >= 1 and stage["losses_finite"], (name, stage)
        assert (run / name / "model" / "model.safetensors").is_file()
        assert {"data", "train"} <= set(stage["durations_s"])
    assert (
        stages["cap"]["losses"]["steps"] > stages["cat"]["losses"]["steps"] >= 2
    )  # one factor: CAP's budget is larger
    # CAT continued CAP's optimizer state and schedule (init_from: full_state, as the recipe hands off)
    assert yaml.safe_load((out / "miniature" / "cat.yaml").read_text())["init_from"] == "full_state"
    variants = ["aurora-m-base", "aurora-m-biden-harris-redteamed", "aurora-m-safety-sft", "aurora-m-instruct"]
    for variant in variants:  # each suite, each variant: the files the eval stage writes per suite
        for suite in ("perplexity", "code", "harness", "safety"):
            assert f"{variant}/{suite}.json" in stages["eval"]["results"], (variant, suite)
    code = json.loads((run / "eval" / "aurora-m-base" / "code.json").read_text())
    assert code["isolation"]["level"] and code["benchmarks"]  # pass@k ran its programs in the sandbox
    assert sorted(stages["publish"]["exports"]) == sorted(variants)
    for variant, plan in report["publish_dry_run"].items():  # planned, written to a folder, nothing pushed
        assert plan["operations"] and (Path(plan["folder"]) / "README.md").is_file(), variant


@pytest.mark.slow
def test_the_report_states_the_scale_factor_and_where_the_model_and_tokenizer_came_from(rehearsal):
    report, out, _ = rehearsal
    mini = report["miniature"]
    full = yaml.safe_load((RECIPE / "cap.yaml").read_text())["train_tokens"]
    mini_cap = yaml.safe_load((out / "miniature" / "cap.yaml").read_text())
    assert mini["scale_factor"] > 1_000_000 and f"{mini['scale_factor']:,}" in mini["scale"]
    assert mini_cap["train_tokens"] <= full // mini["scale_factor"]  # whole steps of the miniature's shape
    assert mini["stages"]["cap"] == {
        "train_tokens": mini_cap["train_tokens"],
        "seq_length": 32,
        "full_train_tokens": full,
    }
    assert mini_cap["data_executor"] == "local" and all("[:50]" in m["split"] for m in mini_cap["mixture"])
    assert "bigcode/starcoderplus" in mini["model"] and "random-initialised" in mini["model"]
    assert "trained on the sampled text" in mini["tokenizer"]
    # the recipe's lm-eval tasks, each found in lm-eval's registry (the recorded Hub does not serve their data)
    tasks = yaml.safe_load((RECIPE / "eval.yaml").read_text())["lm_eval_tasks"]
    assert mini["harness"]["known_to_lm_eval"] == sum(map(len, tasks.values()))
    config = json.loads((out / "run" / "cap" / "model" / "config.json").read_text())
    assert config["model_type"] == "gpt_bigcode" and config["multi_query"] and config["n_layer"] == 2
    assert config["n_positions"] == 2048  # the recipe's own aurora_m patch, applied to the shrunk config
    text = (out / "rehearsal.md").read_text()
    assert f"{mini['scale_factor']:,}" in text and "random-initialised" in text


@pytest.mark.slow
def test_the_report_names_every_source_of_every_stage_with_rows_read(rehearsal):
    report, out, _ = rehearsal
    expected = set()
    for name in ("cap", "cat", "sft", "instruct", "eval"):
        config = yaml.safe_load((RECIPE / f"{name}.yaml").read_text())
        for key, value in config.items():
            if key.endswith("sources") or key in ("mixture", "mbpp_source"):
                for entry in value if isinstance(value, list) else [value]:
                    expected.add((name, key, entry.get("name", key)))
    read = {(s["stage"], s["key"], s["name"]): s for s in report["sources"]}
    assert expected == set(read)
    assert all(s["rows_read"] > 0 and s["columns_mapped"] for s in read.values())
    cleaned = [s for s in read.values() if s["key"] == "mixture"]
    assert all(s["kept_after"] and s["bytes_per_token"] for s in cleaned)


@pytest.mark.slow
def test_the_recorded_hub_serves_a_bounded_amount(rehearsal):
    report, _, _ = rehearsal
    served, reading = report["bytes_served_per_repo"], report["bytes_served_reading"]
    assert set(served) == set(reading) == recipe_hub_ids()
    # 50 rows a source, whatever the corpus size: RefinedWeb's 400 replay files are not all read. Wikipedia is the
    # largest: 10 sources (5 languages in CAP and CAT) over its 65 recorded files of 3 rows each (the real counts)
    assert max(reading.values()) < 1_500_000 and sum(reading.values()) < 3_500_000
    # the miniature's own data steps, evaluation and SFT reads stream the same first rows again
    assert all(served[r] >= reading[r] for r in served) and sum(served.values()) < 2 * sum(reading.values())
    refinedweb = next(s for s in report["sources"] if s["name"] == "refinedweb")
    assert refinedweb["n_files"] == 400 and len(refinedweb["files_read"]) < 20


@pytest.mark.slow
def test_the_launch_the_readme_documents_is_checked_before_any_source_is_read(rehearsal, tmp_path):
    report, _, _ = rehearsal
    assert "cat=fsdp2" in report["launches"]  # read from the README's sbatch lines
    recipe = variant(tmp_path / "recipe", "README.md", "runs/aurora-m-15b/cat fsdp2", "runs/aurora-m-15b/cat zero3")
    out = tmp_path / "out"
    line, stages = refused(cli("rehearse", str(recipe), "--output-dir", str(out)), out)
    assert re.search(
        r"cat\.yaml: init_from: stage cat, launch .*cat=zero3.*: full_state under .*zero3.*DEEPSPEED", line
    )
    assert stages["cat"]["status"] == "refused" and not json.loads((out / "rehearsal.json").read_text())["sources"]


@pytest.mark.slow
def test_a_repo_with_a_loading_script_read_by_id_stops_before_any_read(tmp_path):
    recipe = variant(
        tmp_path / "recipe", "cat.yaml", "dataset: bigscience/xP3, builder: json,", "dataset: bigscience/xP3,"
    )
    out = tmp_path / "out"
    line, stages = refused(cli("rehearse", str(recipe), "--output-dir", str(out)), out)
    assert re.search(r"cat\.yaml: mixture\[\d+\]\.dataset: bigscience/xP3 ships a loading script \(xP3\.py\)", line)
    report = json.loads((out / "rehearsal.json").read_text())
    assert line.endswith(report["refused"]) and not report["sources"]  # refused with the recipe, before any read


def test_an_unlisted_repo_with_a_loading_script_is_refused_from_the_hubs_answers(tmp_path):
    """A script repo no table in the code knows: the rehearsal finds it from what the Hub serves."""
    from aurora_m.rehearsal.hub import RecordedRepo
    from aurora_m.rehearsal.sources import sample_source

    repos = load_snapshots()
    repo = repos["nvidia/HelpSteer"]
    repos["someone/scripted"] = RecordedRepo(
        "someone/scripted", "0" * 40, {}, repo.features, repo.groups, {"scripted.py": None}
    )
    spec = SourceSpec(name="scripted", dataset="someone/scripted", format="instruction", instruction_field="prompt")
    with RecordedHub(repos, cache_dir=tmp_path) as hub:
        with pytest.raises(
            RecipeError,
            match=r"mixture\[2\]\.dataset: .*someone/scripted ships a loading script \(scripted\.py\)",
        ):
            sample_source(spec, "cat", "mixture", "cat.yaml", "mixture[2]", 5, 2**20, hub)


@pytest.mark.slow
def test_a_column_that_does_not_exist_stops_in_its_stages_read_step(tmp_path):
    recipe = variant(
        tmp_path / "recipe",
        "cap.yaml",
        "data_dir: data/python, text_field: content",
        "data_dir: data/python, text_field: source_code",
    )
    out = tmp_path / "out"
    line, stages = refused(cli("rehearse", str(recipe), "--output-dir", str(out), "--sample-rows", "3"), out)
    assert re.search(
        r"cap\.yaml: mixture\[\d+\]\.text_field: stage cap, source python: column 'source_code' not in "
        r"bigcode/the-stack-dedup",
        line,
    )
    assert stages["cap"]["status"] == "refused" and "clean" not in stages["cap"]["steps"]
    assert stages["cat"]["status"] == "not reached"


@pytest.mark.slow
def test_lora_targets_the_model_does_not_have_stop_in_one_line_before_any_training(tmp_path):
    """validate cannot read a Hub model's layers; the miniature builds the recipe's own config chain, so a LoRA
    target GPTBigCode does not have is refused, naming the recipe's own stage file, before anything trains."""
    recipe = variant(
        tmp_path / "recipe",
        "instruct.yaml",
        "sft_format: messages",
        "sft_format: messages\nuse_peft: true\nlora_target_modules: [q_proj, v_proj]",
    )
    out = tmp_path / "out"
    line, stages = refused(
        cli("rehearse", str(recipe), "--output-dir", str(out), "--sample-rows", "3", env=OPT_IN), out
    )
    assert re.search(
        r"recipe/instruct\.yaml: lora_target_modules: stage instruct \(in miniature\): q_proj, v_proj: not a linear "
        r"layer of a GPTBigCode model",
        line,
    )
    assert stages["instruct"]["status"] == "refused" and stages["cap"]["status"] == "not reached"
    assert not (out / "run").exists()  # nothing trained


@pytest.mark.slow
def test_an_lm_eval_task_lm_eval_does_not_know_stops_in_one_line_before_any_training(tmp_path):
    recipe = variant(
        tmp_path / "recipe", "eval.yaml", "{task: winogrande, num_fewshot: 8}", "{task: winogrand, num_fewshot: 8}"
    )
    out = tmp_path / "out"
    line, stages = refused(
        cli("rehearse", str(recipe), "--output-dir", str(out), "--sample-rows", "3", env=OPT_IN), out
    )
    assert re.search(
        r"eval\.yaml: lm_eval_tasks\.en: stage eval: unknown lm-eval task 'winogrand' \(did you mean 'winogrande'\?\)",
        line,
    )
    assert stages["eval"]["status"] == "refused" and not (out / "run").exists()


def test_the_miniature_model_keeps_its_family_and_heads():
    """Shrunk through the family table: GPTBigCode keeps multi-query attention, Llama keeps grouped K/V heads."""
    from aurora_m.patches import read_config_json
    from aurora_m.rehearsal.mini_model import SHAPE, shrink

    bigcode = shrink(read_config_json("starcoderplus"))
    assert (bigcode["n_layer"], bigcode["n_embd"], bigcode["n_head"]) == (2, SHAPE["width"], SHAPE["heads"])
    assert bigcode["multi_query"] and bigcode["n_positions"] == 8192 and bigcode["n_inner"] == 4 * SHAPE["width"]
    llama = {
        "model_type": "llama",
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "head_dim": 128,
        "max_position_embeddings": 8192,
    }
    small = shrink(llama)
    assert small["num_hidden_layers"] == 2 and small["num_attention_heads"] == 4
    assert small["num_key_value_heads"] == 1 and small["head_dim"] == SHAPE["width"] // 4  # still grouped: 4 to 1


@pytest.mark.slow
def test_checks_only_reads_and_cleans_and_trains_nothing(tmp_path):
    out = tmp_path / "out"
    result = cli("rehearse", "recipes/aurora-m-15b", "--output-dir", str(out), "--sample-rows", "3", "--checks-only")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "rehearsal.json").read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {s["name"]: "checked" for s in report["stages"]}
    assert "miniature" not in report and not (out / "run").exists() and report["sources"]


def tiny_rehearsed(tmp_path: Path, data_file: str, edit) -> tuple[Path, subprocess.CompletedProcess]:
    """``rehearse --checks-only`` of a copy of the tiny recipe, one data file rewritten (``edit``: bytes -> bytes)."""
    recipe, out = tmp_path / "recipe", tmp_path / "out"
    shutil.copytree(TINY, recipe)
    path = recipe / "data" / data_file
    path.write_bytes(edit(path.read_bytes()))
    return out, cli("rehearse", str(recipe), "--output-dir", str(out), "--sample-rows", "5", "--checks-only")


def test_a_prompt_only_contamination_source_is_read_as_the_data_step_reads_it(tmp_path):
    """docs/adapting.md's safety prompts carry an instruction and a category, no response: the leakage check needs
    prompts only, so the data step keeps such rows, and the rehearsal must not ask for a response column."""

    def without_responses(raw: bytes) -> bytes:
        rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        assert all("response" in row for row in rows)
        return "".join(json.dumps({k: v for k, v in row.items() if k != "response"}) + "\n" for row in rows).encode()

    out, result = tiny_rehearsed(tmp_path, "safety_prompts.jsonl", without_responses)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "rehearsal.json").read_text())
    assert {s["name"]: s["status"] for s in report["stages"]} == {s["name"]: "checked" for s in report["stages"]}
    read = [s for s in report["sources"] if s["name"] == "safety_prompts" and s["key"] == "contamination_sources"]
    assert read and read[0]["usable_rows"] == 5 and "response_field" not in read[0]["columns_mapped"]


def test_bad_bytes_in_a_local_file_are_the_data_steps_one_line_and_the_report_is_written(tmp_path):
    bad = '{"text": "caf\xe9 \xff\xfe broken bytes"}\n'.encode("latin-1")
    out, result = tiny_rehearsed(tmp_path, "en.jsonl", lambda raw: bad + raw)
    line, stages = refused(result, out)
    assert re.search(
        r"data/en\.jsonl: line 1: stage cap, source en: not UTF-8 \(byte 0xe9 at column 14\); source "
        r"mixture\[\d+\]\.path in \S+cap\.yaml$",
        line,
    ), line
    assert stages["cap"]["status"] == "refused" and "not UTF-8" in stages["cap"]["reason"]
    assert {stages[name]["status"] for name in stages if name != "cap"} == {"not reached"}


def test_without_the_code_opt_in_the_miniature_runs_the_other_suites_and_says_why(monkeypatch):
    """The rehearsing machine may not allow model-written programs (the cluster's eval stage must): the miniature
    leaves the code suite out and says so, rather than refusing the whole rehearsal."""
    from aurora_m.rehearsal.miniature import miniature_suites

    suites = ["perplexity", "code", "harness", "safety"]
    monkeypatch.setenv("AURORA_M_ALLOW_CODE_EXECUTION", "0")
    kept, not_run = miniature_suites(suites)
    assert kept == ["perplexity", "harness", "safety"] and "AURORA_M_ALLOW_CODE_EXECUTION=1" in not_run["code"]
    monkeypatch.setenv("AURORA_M_ALLOW_CODE_EXECUTION", "1")
    assert miniature_suites(suites) == (suites, {})


def test_a_second_rehearsal_into_a_folder_starts_from_nothing_and_keeps_the_users_files(tmp_path):
    """An earlier rehearsal's report, leak files and tokenizer would be read as this one's (a killed re-run left the
    old all-completed report beside a half-rebuilt run): a rehearsal clears what the marker lists as its own, and
    nothing else; bad folders and sizes are one line."""
    out = tmp_path / "out"
    first = cli("rehearse", "recipes/aurora-m-tiny", "--output-dir", str(out), "--checks-only", "--sample-rows", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    (out / "notes.txt").write_text("mine")  # the user's, added later
    stale = out / "cap" / "stale-leak.json"  # as a killed or earlier rehearsal's cleaning chain left it
    stale.parent.mkdir(exist_ok=True)
    stale.write_text("{}")
    (out / "rehearsal.json").write_text('{"stale": true}')
    again = cli(
        "rehearse",
        "recipes/aurora-m-tiny",
        "--output-dir",
        str(out),
        "--checks-only",
        "--sample-rows",
        "3",
        "--sample-mb",
        "nan",
    )
    assert again.returncode == 2 and "--sample-mb: expected a positive, finite number, got nan" in again.stderr
    assert (out / "rehearsal.json").read_text() == '{"stale": true}'  # refused before touching the folder
    again = cli("rehearse", "recipes/aurora-m-tiny", "--output-dir", str(out), "--checks-only", "--sample-rows", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert not stale.exists() and "stale" not in json.loads((out / "rehearsal.json").read_text())
    assert (out / "notes.txt").read_text() == "mine"
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for target, words in ((afile, "is a file, not a folder"), (afile / "sub", "cannot be used as the output folder")):
        bad = cli("rehearse", "recipes/aurora-m-tiny", "--output-dir", str(target), "--checks-only")
        lines = [line for line in bad.stderr.splitlines() if "error:" in line]
        assert bad.returncode == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_offline_a_real_repo_the_recorded_hub_lacks_is_not_called_a_typo(tmp_path):
    recipe = variant(
        tmp_path / "recipe",
        "cap.yaml",
        "dataset: uonlp/CulturaX, config_name: fi",
        "dataset: HuggingFaceFW/fineweb-2, config_name: fin_Latn",
    )
    out = tmp_path / "out"
    line, stages = refused(
        cli("rehearse", str(recipe), "--output-dir", str(out), "--sample-rows", "3", "--checks-only"), out
    )
    assert re.search(
        r"cap\.yaml: mixture\[1\]\.dataset: stage cap, source web-fi: "
        r"HuggingFaceFW/fineweb-2 is not in the recorded Hub",
        line,
    ), line
    assert "online" in line and stages["cap"]["status"] == "refused"


def test_live_hub_while_hf_hub_offline_is_set_is_one_line(tmp_path):
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: --live-hub cannot override it, so it says so."""
    out = tmp_path / "out"
    result = cli(
        "rehearse", "recipes/aurora-m-tiny", "--output-dir", str(out), "--live-hub", env={"HF_HUB_OFFLINE": "1"}
    )
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(lines) == 1 and "--live-hub: HF_HUB_OFFLINE is set" in lines[0]
    assert not out.exists()
