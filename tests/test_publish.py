"""Publishing: honest cards, one atomic commit per variant, against an in-process fake Hub.

The fake sits behind huggingface_hub's own client (``set_client_factory`` + an httpx2 MockTransport), so
everything from ``HfApi`` down is the real library; only the Hub's HTTP answers are ours (tests/fake_hub.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx2
import pytest
import yaml
from fake_hub import FakeHub, validate_card
from huggingface_hub import HfApi, ModelCard

from aurora_m.cli import main
from aurora_m.errors import RecipeError
from aurora_m.hub.card import eval_results
from aurora_m.hub.push import plan_push
from aurora_m.layout import ExportDir
from aurora_m.pipeline.publish import push_from_run

from conftest import cli

VARIANTS = ("aurora-m-tiny-base", "aurora-m-tiny-redteamed", "aurora-m-tiny-safety-sft")
TOKEN = "hf_" + "publishtesttoken" * 3  # searched for in every file and log line


@pytest.fixture()
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; the fake is in-process
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub() as fake:
        yield fake


def export_dir(run: Path, variant: str) -> Path:
    entry = next(v for v in json.loads((run / "summary.json").read_text())["variants"] if v["name"] == variant)
    return (run / entry["model_card"]).parent


def front_matter(card: Path) -> dict:
    return yaml.safe_load(card.read_text().split("---")[1])


def push(run, variant, **kwargs):
    return push_from_run(run, variant, retries=kwargs.pop("retries", 3), backoff_s=0.01, **kwargs)


# ---------------------------------------------------------------------------------------------- one commit
def test_the_branch_exists_before_one_commit_of_exactly_the_dry_run_files(tiny_run, hub, tmp_path, capsys):
    variant = "aurora-m-tiny-redteamed"
    assert main(["publish", str(tiny_run), "--variant", variant, "--dry-run", "--out", str(tmp_path / "dry")]) == 0
    printed = capsys.readouterr().out
    dry = {
        p.relative_to(tmp_path / "dry").as_posix(): p.read_bytes()
        for p in (tmp_path / "dry").rglob("*")
        if p.is_file() and p.name != ExportDir.MARKER
    }
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "assets/perplexity.png"} <= set(dry)
    assert all(f"  add {name} (" in printed for name in dry) and "nothing pushed" in printed
    assert not hub.requests, "a dry run never talks to the Hub"

    plan = plan_push(export_dir(tiny_run, variant))
    plan.branch = variant  # the branch_per_variant layout: one repo, a branch per variant
    from aurora_m.hub.push import push as push_plan

    push_plan(plan, backoff_s=0.01)
    repo = hub.repos[plan.repo_id]
    assert repo.private, "repos are created private"
    order = [c for c in hub.calls() if any(k in c for k in ("/repos/create", "/branch/", "/commit/"))]
    assert order == [
        "POST /api/repos/create",
        f"POST /api/models/{plan.repo_id}/branch/{variant}",
        f"POST /api/models/{plan.repo_id}/commit/{variant}",
    ]
    assert [c.title for c in repo.history(variant)][1:] == ["initial commit"]  # one commit on the first
    assert repo.files(variant) == {**dry, ".gitattributes": repo.files("main")[".gitattributes"]}  # byte-equal
    assert repo.files("main").keys() == {".gitattributes"}
    # the weights and plots went through Git LFS (uploaded, then named by their oid in the commit), text inline
    tree = {f.path: f for f in HfApi().list_repo_tree(plan.repo_id, revision=variant, recursive=True)}
    weights = hashlib.sha256(dry["model.safetensors"]).hexdigest()
    assert tree["model.safetensors"].lfs.sha256 == weights and weights in hub.lfs_uploads()
    assert tree["assets/perplexity.png"].lfs is not None and tree["config.json"].lfs is None
    assert len(hub.lfs_uploads()) == len({f.lfs.sha256 for f in tree.values() if f.lfs})  # each object once


def test_every_variant_pushes_as_its_own_repo_with_the_cli(tiny_run, hub, capsys):
    from huggingface_hub import constants

    assert main(["publish", str(tiny_run), "--all"]) == 0
    out = capsys.readouterr().out
    variants = [v["name"] for v in json.loads((tiny_run / "summary.json").read_text())["variants"]]
    assert set(VARIANTS) <= set(variants)
    for variant in variants:  # a new variant (instruct) needs nothing of its own
        repo = hub.repos[f"aurora-m-tiny-local/{variant}"]
        assert f"{variant}: pushed {constants.ENDPOINT}/{repo.repo_id}/commit/" in out
        assert len(repo.history()) == 2 and "model.safetensors" in repo.files()
    assert len(hub.calls("POST", "/commit/")) == len(variants)


def test_pushing_again_is_refused_unless_told_and_then_replaces_in_one_commit(tiny_run, hub):
    variant = "aurora-m-tiny-base"
    push(tiny_run, variant)
    repo = hub.repos[f"aurora-m-tiny-local/{variant}"]
    hub.commit_outside(repo.repo_id, "main", {"stale.txt": b"from an older export"})
    with pytest.raises(RecipeError, match=r"already holds files \(README.md, .*--overwrite"):
        push(tiny_run, variant)
    assert len(repo.history()) == 3
    push(tiny_run, variant, overwrite=True)
    assert len(repo.history()) == 4 and "stale.txt" not in repo.files()
    assert "model.safetensors" in repo.files()


def test_an_interrupted_push_resumes_uploading_only_what_is_missing(tiny_run, hub):
    """Killed in the middle of its uploads (Ctrl-C, a lost node), a push left nothing visible; the same push
    again uploads only the objects the Hub did not receive, then makes them visible in one commit."""
    from aurora_m.hub.push import push as push_plan

    plan = plan_push(export_dir(tiny_run, "aurora-m-tiny-base"))
    large = {hashlib.sha256(path.read_bytes()).hexdigest() for name, path in plan.files.items() if name.endswith(
        (".safetensors", ".png"))}  # fmt: skip
    assert len(large) >= 3
    seen = []

    def interrupted_at_the_second(request):
        seen.append(request)
        if len(seen) == 2:
            raise KeyboardInterrupt  # what the process gets when it is stopped mid-upload

    hub.fail("/lfs-upload/", interrupted_at_the_second, interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        push_plan(plan, backoff_s=0.01)
    repo = hub.repos[plan.repo_id]
    assert set(repo.files()) == {".gitattributes"} and len(repo.history()) == 1  # nothing visible
    received = set(hub.lfs_store(plan.repo_id).objects)
    assert received and received < large  # some arrived, not all
    before = len(hub.lfs_uploads())
    push_plan(plan, backoff_s=0.01)
    again = hub.lfs_uploads()[before:]
    assert sorted(again) == sorted(large - received)  # only what was missing, each once
    assert len(repo.history()) == 2 and set(plan.files) <= set(repo.files())
    assert {n: repo.files()[n] for n in plan.files} == {n: p.read_bytes() for n, p in plan.files.items()}


def test_the_fake_hub_is_as_strict_as_the_hub_about_lfs(hub):
    """Through huggingface_hub: tracked and binary files go to LFS, text inline; a commit carrying a binary file
    inline, or naming an LFS object never uploaded, is refused; an object the repo holds is not asked for again."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.utils import get_session

    api = HfApi()
    api.create_repo("me/strict")
    weights, plot = b"\x00safetensors" * 100, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    adds = {"model.safetensors": weights, "assets/plot.png": plot, "config.json": b"{}"}
    api.create_commit("me/strict", [CommitOperationAdd(n, b) for n, b in adds.items()], commit_message="one")
    tree = {f.path: f for f in api.list_repo_tree("me/strict", recursive=True)}
    assert {n for n, f in tree.items() if f.lfs} == {"model.safetensors", "assets/plot.png"}
    assert sorted(hub.lfs_uploads()) == sorted(hashlib.sha256(b).hexdigest() for b in (weights, plot))
    assert hub.repos["me/strict"].files() == {
        **adds,
        ".gitattributes": hub.repos["me/strict"].files()[".gitattributes"],
    }
    api.create_commit("me/strict", [CommitOperationAdd("copy.safetensors", weights)], commit_message="two")
    assert len(hub.lfs_uploads()) == 2  # the Hub holds that object: not uploaded again

    def raw_commit(line: dict):
        body = "\n".join(json.dumps(x) for x in [{"key": "header", "value": {"summary": "raw"}}, line])
        url = f"{api.endpoint}/api/models/me/strict/commit/main"
        return get_session().post(url, content=body.encode(), headers={"authorization": f"Bearer {TOKEN}"})

    inline = {"content": base64.b64encode(b"\x00binary").decode(), "path": "blob.dat", "encoding": "base64"}
    assert raw_commit({"key": "file", "value": inline}).status_code == 400
    pointer = {"path": "ghost.safetensors", "algo": "sha256", "oid": "0" * 64, "size": 3}
    assert raw_commit({"key": "lfsFile", "value": pointer}).status_code == 422
    assert len(hub.repos["me/strict"].history()) == 3  # neither landed


@pytest.mark.parametrize(
    "front,words",
    [
        ("license: other\n", '"license: other" needs "license_name" and "license_link"'),
        ("license: apache-2.0\ntags: [code, {a: b}]\n", '"tags" must be a list of strings'),
        ("license: apache-2.0\npipeline_tag: text-generator\n", "'text-generator' is not a Hub task"),
        ("language: [en, english]\n", "\"language\" must be ISO 639 codes, got 'english'"),
    ],
)
def test_the_fake_hub_refuses_card_metadata_the_hub_refuses(front, words, hub):
    from huggingface_hub import ModelCard

    with pytest.raises(ValueError, match=re.escape(words)):
        ModelCard(f"---\n{front}---\n# card\n").validate()
    ModelCard("---\nlicense: other\nlicense_name: aurora-m\nlicense_link: LICENSE\ntags: [code]\n---\n").validate()


# ---------------------------------------------------------------------------------------------- the card
def test_cards_pass_metadata_validation_and_the_model_index_round_trips(tiny_run):
    cards = {}
    for variant in VARIANTS:
        folder = export_dir(tiny_run, variant)
        text = (folder / "README.md").read_text()
        assert validate_card(text) == [], variant
        card = ModelCard.load(folder / "README.md")
        front = cards[variant] = front_matter(folder / "README.md")
        results = json.loads((folder / "eval_results.json").read_text())
        assert card.data.eval_results == eval_results(results, _eval_config(tiny_run))
        assert {(r.dataset_type, r.metric_type) for r in card.data.eval_results} >= {
            ("aurora_mc_en", "acc_norm"),
            ("aurora_mc_fi", "acc_norm"),
        }  # lm-eval tasks as lm-eval names them
        for result in card.data.eval_results:  # in-repo data has no id: capped HumanEval, sample MBPP, local text
            assert result.dataset_type not in ("openai/openai_humaneval", "google-research-datasets/mbpp")
            assert result.metric_type != "perplexity"
        assert front["language"] == ["en", "fi", "hi", "ja", "vi"] and "code" in front["tags"]
        assert front["license"] == "bigcode-openrail-m"
        isolation = results["code"]["isolation"]  # the sandbox's strength, as the eval stage recorded it
        assert f"isolation level **{isolation['level']}**\n({isolation['description']})." in text
        assert all("/" in d for d in front.get("datasets", [])), front.get("datasets")
        for section in (
            "## Lineage",
            "## Training data",
            "## Training procedure",
            "**Hardware.**",
            "## Evaluation",
            "## Safety",
            "## Prompt format",
            "## Intended use and limitations",
            "## Citation",
            "2404.00399",
            "### Instruction:\n{instruction}\n### Response:\n",
        ):
            assert section in text, (variant, section)
        assert "github.com" not in text
        safety = json.loads((folder / "eval_results.json").read_text())["safety"]
        test_agreement = safety["judge_agreement"]["test"]
        assert f"{test_agreement['agreement']:.2f} on {test_agreement['n']} test responses" in text
        assert "| language | prompts | empty responses | refused (all) |" in text and "upper bound" not in text
        for image in [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
            assert (folder / image).is_file(), image
    # a model built from a config has no base model; later stages name their parent's repo
    assert "base_model" not in cards["aurora-m-tiny-base"] and "base_model_relation" not in cards["aurora-m-tiny-base"]
    assert cards["aurora-m-tiny-redteamed"]["base_model"] == "aurora-m-tiny-local/aurora-m-tiny-base"
    assert cards["aurora-m-tiny-safety-sft"]["base_model"] == "aurora-m-tiny-local/aurora-m-tiny-redteamed"
    assert cards["aurora-m-tiny-safety-sft"]["base_model_relation"] == "finetune"


def _eval_config(run: Path) -> dict:
    from aurora_m.hub.variants import stage_config
    from aurora_m.layout import RunLayout

    return stage_config(RunLayout(run), json.loads((run / "summary.json").read_text()), "eval")


def test_no_file_of_an_export_holds_a_local_path(tiny_run):
    needles = [str(tiny_run).encode(), str(Path(tiny_run).resolve()).encode()]
    for variant in VARIANTS:
        for path in export_dir(tiny_run, variant).rglob("*"):
            if path.is_file() and path.name != ExportDir.MARKER:
                data = path.read_bytes()
                assert not any(n in data for n in needles), path
                if path.suffix in (".json", ".md"):
                    assert f'"{Path.home()}' not in path.read_text(), path


def test_the_hub_refusing_the_card_stops_the_push_before_anything_is_created(tiny_run, hub, tmp_path):
    import shutil

    from aurora_m.hub.push import push as push_plan

    folder = tmp_path / "export"
    shutil.copytree(export_dir(tiny_run, "aurora-m-tiny-base"), folder)
    card = folder / "README.md"
    bad = card.read_text().replace("- vi\n", "- vi\n- code\n", 1)  # `code` is not a language code
    card.write_text(bad)
    from aurora_m.io import file_digest

    marker = json.loads((folder / ExportDir.MARKER).read_text())
    for entry in marker["files"]:  # the card edited as if exported so: only the Hub can refuse it now
        entry["size"] = (folder / entry["path"]).stat().st_size
        entry["blake2b"] = file_digest(folder / entry["path"])
    (folder / ExportDir.MARKER).write_text(json.dumps(marker))
    with pytest.raises(RecipeError, match=r"refused the card's metadata.*language.*'code'"):
        push_plan(plan_push(folder), backoff_s=0.01)
    assert hub.repos == {} and not hub.calls("POST", "/commit/|/repos/create")


def test_model_index_carries_real_ids_only_for_full_hub_benchmarks():
    results = {
        "code": {
            "benchmarks": {
                "humaneval": {"problems": 164, "greedy": {"pass@1": 0.293}},
                "mbpp": {"problems": 500, "greedy": {"pass@1": 0.34}},
            }
        },
        "perplexity": {"en": 9.5, "fi": 12.0},
    }
    hub_config = {
        "mbpp_source": {"dataset": "google-research-datasets/mbpp", "config_name": "full", "split": "test"},
        "perplexity_sources": [
            {
                "name": "en",
                "dataset": "uonlp/CulturaX",
                "config_name": "en",
                "holdout_fraction": 0.01,
                "take": "heldout",
            },
            {"name": "fi", "path": "data/fi.jsonl", "take": "heldout"},
        ],
    }
    got = {
        (r.dataset_type, r.dataset_config, r.metric_type): r.metric_value for r in eval_results(results, hub_config)
    }
    assert got == {
        ("openai/openai_humaneval", None, "pass@1"): 0.293,
        ("google-research-datasets/mbpp", "full", "pass@1"): 0.34,
        ("uonlp/CulturaX", "en", "perplexity"): 9.5,
    }
    sample = {"mbpp_source": {"path": "data/mbpp_sample.jsonl"}, "code_max_problems": "8"}
    assert eval_results(results, sample) == []  # an in-repo sample and a capped run carry no dataset id


# ---------------------------------------------------------------------------------------------- failures
def test_a_500_on_commit_is_retried_and_succeeds(tiny_run, hub, logs):
    hub.fail("/commit/", 500)
    push(tiny_run, "aurora-m-tiny-base")
    repo = hub.repos["aurora-m-tiny-local/aurora-m-tiny-base"]
    assert len(hub.calls("POST", "/commit/")) == 2 and len(repo.history()) == 2
    assert "commit: 500, trying again" in logs.text


def test_a_concurrent_commit_refuses_ours_with_a_clear_error(tiny_run, hub):
    repo_id = "aurora-m-tiny-local/aurora-m-tiny-base"
    hub.fail("/commit/", lambda request: hub.commit_outside(repo_id, "main", {"NOTES.md": b"theirs"}))
    with pytest.raises(RecipeError, match="changed while pushing .*someone else committed.*nothing was committed"):
        push(tiny_run, "aurora-m-tiny-base")
    assert set(hub.repos[repo_id].files()) == {".gitattributes", "NOTES.md"}  # theirs kept, nothing of ours


def test_a_lost_connection_leaves_nothing_half_pushed(tiny_run, hub, capsys):
    hub.fail("/commit/", *[httpx2.ConnectError("connection reset")] * 4)
    with pytest.raises(RecipeError, match="could not reach the Hub .*ConnectError.*nothing was committed"):
        push(tiny_run, "aurora-m-tiny-base")
    assert set(hub.repos["aurora-m-tiny-local/aurora-m-tiny-base"].files()) == {".gitattributes"}
    assert len(hub.calls("POST", "/commit/")) == 4  # the first try and three retries


def test_a_commit_whose_answer_was_lost_is_recognised_on_retry(tiny_run, hub):
    answered = []

    def lose_the_answer(request):
        answered.append(hub.commit(request, repo_id="aurora-m-tiny-local/aurora-m-tiny-base", revision="main"))
        raise httpx2.ReadError("answer lost")

    hub.fail("/commit/", lose_the_answer)
    _, url = push(tiny_run, "aurora-m-tiny-base")
    repo = hub.repos["aurora-m-tiny-local/aurora-m-tiny-base"]
    assert len(repo.history()) == 2 and url.endswith(repo.branches["main"])  # one commit, reported as pushed


def test_offline_or_without_a_token_the_cli_says_so_in_one_line(tiny_run, tmp_path):
    offline = cli("publish", str(tiny_run), "--variant", "aurora-m-tiny-base")
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr and "Traceback" not in offline.stderr
    env = {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")}
    no_token = cli("publish", str(tiny_run), "--variant", "aurora-m-tiny-base", env=env)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr
    unknown = cli("publish", str(tiny_run), "--variant", "nope", "--dry-run", "--out", str(tmp_path / "x"))
    assert unknown.returncode == 2 and "aurora-m-tiny-base" in unknown.stderr and not (tmp_path / "x").exists()


def test_the_token_reaches_no_file_and_no_log_line(tiny_run, hub, tmp_path, logs, capsys):
    hub.fail("/commit/", 503)  # a retry's warning line too
    push(tiny_run, "aurora-m-tiny-safety-sft")
    assert (
        main(
            ["publish", str(tiny_run), "--variant", "aurora-m-tiny-base", "--dry-run", "--out", str(tmp_path / "dry")]
        )
        == 0
    )
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)  # it was used
    captured = capsys.readouterr()
    assert "trying again" in logs.text and "Request" in logs.text  # our lines and huggingface_hub's debug lines
    assert TOKEN not in logs.text and TOKEN not in captured.out + captured.err
    for root in (tiny_run, tmp_path):
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        assert not any(TOKEN.encode() in data for data in repo.files().values())


def test_an_export_with_a_pickle_or_changed_files_is_never_pushed(tiny_run, tmp_path):
    import shutil

    from aurora_m.io import file_digest

    folder = tmp_path / "export"
    shutil.copytree(export_dir(tiny_run, "aurora-m-tiny-base"), folder)
    (folder / "training_args.bin").write_bytes(b"pickle")
    with pytest.raises(RecipeError, match="changed since it was exported .*training_args.bin"):
        plan_push(folder)
    marker = json.loads((folder / ExportDir.MARKER).read_text())
    # listed as if the export had written it (size and digest): the pickle rule still refuses it
    digest = file_digest(folder / "training_args.bin")
    marker["files"].append({"path": "training_args.bin", "size": 6, "blake2b": digest})
    (folder / ExportDir.MARKER).write_text(json.dumps(marker))
    with pytest.raises(RecipeError, match="never pushed .*training_args.bin"):
        plan_push(folder)


def test_the_15b_lineage_names_starcoderplus_then_each_parent(tmp_path):
    """The real recipe's CAP continues bigcode/starcoderplus's weights; later stages name their parent's repo."""
    import shutil

    from aurora_m.hub.arguments import PublishArguments
    from aurora_m.hub.variants import variant_from_summary
    from aurora_m.layout import RunLayout
    from aurora_m.stage_checks import parse_stage

    from conftest import ROOT

    recipe = ROOT / "recipes" / "aurora-m-15b"
    (tmp_path / "recipe").mkdir()
    for name in ("cap.yaml", "cat.yaml", "publish.yaml"):
        shutil.copy(recipe / name, tmp_path / "recipe" / name)
    steps = [
        {"stage": s, "kind": "pretrain", "variant": v, "output_dir": s, "data_dir": f"{s}/data"}
        for s, v in (("cap", "aurora-m-base"), ("cat", "aurora-m-biden-harris-redteamed"))
    ]
    summary = {
        "recipe": "aurora-m-15b",
        "overrides": {},
        "stages": [{"name": "cap", "config": "cap.yaml"}, {"name": "cat", "config": "cat.yaml"}],
        "variants": [
            {
                "name": step["variant"],
                "stage": step["stage"],
                "model_dir": f"{step['stage']}/model",
                "eval_results": f"eval/{step['variant']}/results.json",
                "evaluated_by": "eval",
                "lineage": steps[: i + 1],
            }
            for i, step in enumerate(steps)
        ],
    }
    for variant in summary["variants"]:
        (tmp_path / variant["eval_results"]).parent.mkdir(parents=True)
        (tmp_path / variant["eval_results"]).write_text("{}")
    (publish_args,) = parse_stage(tmp_path / "recipe" / "publish.yaml", "publish")
    layout = RunLayout(tmp_path)
    base = variant_from_summary(layout, summary, "aurora-m-base", publish_args)
    redteamed = variant_from_summary(layout, summary, "aurora-m-biden-harris-redteamed", publish_args)
    assert (base.repo_id, base.base_model) == ("aurora-m/aurora-m-base", "bigcode/starcoderplus")
    assert (redteamed.repo_id, redteamed.base_model) == (
        "aurora-m/aurora-m-biden-harris-redteamed",
        "aurora-m/aurora-m-base",
    )
    from aurora_m.hub.card import training_datasets

    assert {"uonlp/CulturaX", "bigcode/the-stack-dedup", "aurora-m/biden-harris-redteam"} <= set(
        training_datasets(redteamed.lineage, [])
    )
    branchy = PublishArguments(hub_namespace="me", hub_layout="branch_per_variant")
    same_repo = variant_from_summary(layout, summary, "aurora-m-biden-harris-redteamed", branchy)
    assert (same_repo.repo_id, same_repo.branch, same_repo.base_model) == (
        "me/aurora-m-15b",
        "aurora-m-biden-harris-redteamed",
        None,
    )  # a branch of itself cannot be its base


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("language", "[en, code]", "'code' is not an ISO 639 language code"),
        ("card_datasets", "[CulturaX]", "'CulturaX' is not a Hub dataset id"),
        ("hub_layout", "one_big_repo", "expected one of repo_per_variant, branch_per_variant"),
    ],
)
def test_publish_yaml_mistakes_are_one_line(recipe_copy, key, value, words):
    text = (recipe_copy / "publish.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
    (recipe_copy / "publish.yaml").write_text("\n".join([*lines, f"{key}: {value}", ""]))
    result = cli("validate", str(recipe_copy))
    assert result.returncode == 2 and words in result.stderr and "publish.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dry_run_never_replaces_away_a_file_of_the_users(tiny_run, tmp_path):
    out = tmp_path / "dry"
    assert main(["publish", str(tiny_run), "--variant", "aurora-m-tiny-base", "--dry-run", "--out", str(out)]) == 0
    (out / "my_notes.txt").write_text("precious")
    again = cli(
        "publish", str(tiny_run), "--variant", "aurora-m-tiny-base", "--dry-run", "--out", str(out), "--overwrite"
    )
    assert again.returncode == 2 and "my_notes.txt" in again.stderr and "Traceback" not in again.stderr
    assert (out / "my_notes.txt").read_text() == "precious"
