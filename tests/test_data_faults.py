"""What users get when a source is broken, unreachable or huge: one line naming the file and the fix,
and a data step whose memory and time follow the token budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aurora_m.data.sources import load_source, read_source
from aurora_m.errors import RecipeError
from aurora_m.hub_errors import explain_hub_errors
from aurora_m.source_spec import SourceSpec

ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = ROOT / "recipes" / "aurora-m-tiny" / "data"
TOKENIZER_FILES = [str(TINY_DATA / f"{lang}.jsonl") for lang in ("en", "fi", "hi", "ja", "vi", "code")]


def read_error(path: Path, **spec) -> str:
    with pytest.raises(RecipeError) as info:
        load_source(SourceSpec(name="en", path=str(path), **spec), "cap.yaml", "mixture")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: ") and message.endswith("source mixture[en].path in cap.yaml")
    return message


def rows(n: int) -> str:
    return "".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(n))


# ----------------------------------------------------------------------------- bad local files


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text(rows(16) + '{"text": "a" "b"}\n' + rows(3))
    assert ": line 17: not valid JSON (Expecting ',' delimiter at column 14)" in read_error(path)


def test_non_utf8_bytes_are_located(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_bytes(rows(2).encode() + b'{"text": "caf\xff"}\n' + rows(2).encode())
    assert ": line 3: not UTF-8 (byte 0xff at column 14)" in read_error(path)


def test_latin1_text_in_another_column_is_located(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_bytes(rows(4).encode() + '{"text": "ok", "category": "caf\xe9"}\n'.encode("latin-1"))
    assert ": line 5: not UTF-8 (byte 0xe9 at column 32)" in read_error(path)


@pytest.mark.parametrize("content", [b"", b"\n\n   \n", b"[]"], ids=["zero-bytes", "blank-lines", "empty-array"])
def test_empty_data_file(tmp_path, content):
    path = tmp_path / ("en.json" if content == b"[]" else "en.jsonl")
    path.write_bytes(content)
    assert read_error(path) == f"{path}: empty data file (no rows); source mixture[en].path in cap.yaml"


def test_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text(rows(2) + "[1, 2]\n")
    assert ": line 3: a list, not a JSON object" in read_error(path)


def test_json_array_file_reports_the_line(tmp_path):
    path = tmp_path / "en.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": "b"}\n  {"text": "c"}\n]\n')
    assert ": line 4: not valid JSON (Expecting ',' delimiter at column 3)" in read_error(path)


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "en.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    assert ": not a readable parquet file (" in read_error(path)


def test_truncated_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "en.parquet"
    pq.write_table(pa.table({"text": [f"document {i}" for i in range(1000)]}), path)
    path.write_bytes(path.read_bytes()[:-100])
    assert ": not a readable parquet file (" in read_error(path)


def test_missing_file(tmp_path):
    path = tmp_path / "en.jsonl"
    assert ": no such file" in read_error(path)


def test_text_that_is_not_a_string_is_removed_and_reported(tmp_path, logs):
    path = tmp_path / "en.jsonl"
    values = ["first", 5, {"nested": "dict"}, "", None, ["a", "list"], "last"]
    path.write_text("".join(json.dumps({"text": v}) + "\n" for v in values))
    ds, report = load_source(SourceSpec(name="en", path=str(path)), "cap.yaml", "mixture")
    assert list(ds["text"]) == ["first", "last"]
    assert report.removed_not_text == 3 and report.removed_empty == 2 and report.kept == 2
    assert report.notes == [
        "2 row(s) removed whose text is missing or blank (rows 4, 5)",
        "3 row(s) removed whose text is not a string (rows 2, 3, 6)",
    ]
    assert "rows 2, 3, 6" in logs.text


def test_instruction_fields_that_are_not_strings(tmp_path):
    path = tmp_path / "rt.jsonl"
    pairs = [("Q1", "A1"), (3, "A2"), ("Q3", {"a": 1}), ("Q4", " ")]
    path.write_text("".join(json.dumps({"instruction": i, "response": r}) + "\n" for i, r in pairs))
    spec = SourceSpec(name="rt", path=str(path), format="instruction")
    docs, report = read_source(spec, "sft.yaml", "sft_sources", prompt_completion=True)
    assert len(docs.to_chats()) == 1 and report.removed_not_text == 2 and report.removed_empty == 1
    assert report.notes[0] == "1 row(s) removed whose instruction/response is missing or blank (rows 4)"


def test_a_note_names_the_first_rows_and_counts_them_all(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text("".join(json.dumps({"text": " " if i % 2 else "kept"}) + "\n" for i in range(30)))
    _, report = load_source(SourceSpec(name="en", path=str(path)), "cap.yaml", "mixture")
    assert report.removed_empty == 15 and report.kept == 15
    assert report.notes == ["15 row(s) removed whose text is missing or blank (rows 2, 4, 6, 8, 10, ...)"]


# ----------------------------------------------------------------------------- the Hub


def test_offline_missing_hub_dataset_says_how_to_fix_it():
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"  # conftest
    with pytest.raises(RecipeError) as info:
        load_source(SourceSpec(name="code", dataset="nobody-here/no-such-dataset"), "cap.yaml", "mixture")
    message = str(info.value)
    assert message.startswith(
        "cap.yaml: mixture[code].dataset: dataset nobody-here/no-such-dataset is not in the "
        "local cache and offline mode is on"
    )
    assert "unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE or download it first" in message and "\n" not in message


def test_offline_missing_tokenizer_names_the_key_and_the_download(tmp_path):
    from aurora_m.args import MixtureArguments, ModelArguments
    from aurora_m.data.build import build_pretrain_dataset

    mix = MixtureArguments(mixture=[{"name": "en", "path": str(TINY_DATA / "en.jsonl")}], train_tokens=1000)
    with pytest.raises(RecipeError) as info:
        build_pretrain_dataset(
            ModelArguments(tokenizer_name_or_path="nobody-here/no-tokenizer"), mix, tmp_path / "data", "cap.yaml"
        )
    assert str(info.value).startswith(
        "cap.yaml: tokenizer_name_or_path: model nobody-here/no-tokenizer is not in "
        "the local cache and offline mode is on"
    )
    assert str(info.value).endswith("or download it first (`hf download nobody-here/no-tokenizer`)")
    assert not (tmp_path / "data").exists()


# One process with the network on, the Hub answered in-process (stack.md): real datasets / transformers
# calls, real huggingface_hub error parsing. It prints each case's error message as JSON.
HUB_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import httpx2, huggingface_hub

    def answer(request):
        url = str(request.url)
        if "/bad-token" in url:
            return httpx2.Response(401, headers={"X-Error-Message": "Invalid credentials in Authorization header"},
                                   request=request)
        if "/gated-403" in url:
            return httpx2.Response(403, headers={"X-Error-Code": "GatedRepo"}, request=request)
        if "/gated-401" in url:
            return httpx2.Response(401, headers={"X-Error-Code": "GatedRepo"}, request=request)
        if "/private" in url:  # what the Hub answers an anonymous caller for a private (or missing) repo
            return httpx2.Response(401, json={"error": "Invalid username or password."}, request=request)
        return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"}, request=request)

    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    from transformers import AutoConfig
    from aurora_m.source_spec import SourceSpec
    from aurora_m.data.sources import load_source
    from aurora_m.errors import RecipeError
    from aurora_m.hub_errors import explain_hub_errors

    out = {}
    for repo in ["org/gated-403", "org/gated-401", "org/missing", "org/private", "org/bad-token"]:
        os.environ.pop("HF_TOKEN", None)
        if repo == "org/bad-token":
            os.environ["HF_TOKEN"] = sys.argv[1]
        try:
            load_source(SourceSpec(name="x", dataset=repo), "cap.yaml", "mixture")
        except RecipeError as err:
            out["dataset " + repo] = str(err)
        try:
            with explain_hub_errors("cap.yaml", "model_name_or_path", repo + "-model", repo_type="model"):
                AutoConfig.from_pretrained(repo + "-model")
        except RecipeError as err:
            out["model " + repo] = str(err)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def hub_answers(tmp_path_factory) -> dict[str, str]:
    token = "hf_" + "x" * 34
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path_factory.mktemp("hf-home")), HF_HUB_DISABLE_TELEMETRY="1")
    result = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, token], capture_output=True, text=True, env=env, timeout=180, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert token not in result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gated_dataset_gives_the_page_to_accept_the_terms(hub_answers):
    message = hub_answers["dataset org/gated-403"]
    assert message.startswith("cap.yaml: mixture[x].dataset: dataset org/gated-403 is gated: ")
    assert "accept its terms at https://huggingface.co/datasets/org/gated-403" in message
    assert "with the account you log in with (`hf auth login` or HF_TOKEN)" in message
    anonymous = hub_answers["dataset org/gated-401"]
    assert "not logged in: log in (`hf auth login` or HF_TOKEN), then accept its terms" in anonymous
    assert "https://huggingface.co/datasets/org/gated-401" in anonymous


def test_gated_model_gives_the_model_page(hub_answers):
    message = hub_answers["model org/gated-403"]
    assert message.startswith("cap.yaml: model_name_or_path: model org/gated-403-model is gated")
    assert "https://huggingface.co/org/gated-403-model " in message and "/datasets/" not in message


@pytest.mark.parametrize("kind", ["dataset", "model"])
@pytest.mark.parametrize("repo", ["org/missing", "org/private"])
def test_missing_or_private_repo(hub_answers, kind, repo):
    message = hub_answers[f"{kind} {repo}"]
    assert "not found on the Hub: check the id" in message
    assert message.endswith("a private repo needs a login (`hf auth login` or HF_TOKEN)")


@pytest.mark.parametrize("kind", ["dataset", "model"])
def test_refused_token(hub_answers, kind):
    message = hub_answers[f"{kind} org/bad-token"]
    assert "the Hub refused the token (401 Unauthorized)" in message
    assert message.endswith("log in again (`hf auth login` or HF_TOKEN)")


def test_hub_errors_from_real_responses_for_models():
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    def failing(status, headers, url="https://huggingface.co/api/models/org/name"):
        response = httpx2.Response(status, headers=headers, request=httpx2.Request("GET", url))
        hf_raise_for_status(response)

    with pytest.raises(
        RecipeError,
        match=r"^m.yaml: model_name_or_path: model org/name is gated: accept its terms "
        r"at https://huggingface.co/org/name with",
    ):
        with explain_hub_errors("m.yaml", "model_name_or_path", "org/name", repo_type="model"):
            failing(403, {"X-Error-Code": "GatedRepo"})
    with pytest.raises(RecipeError, match="model org/name not found on the Hub"):
        with explain_hub_errors("m.yaml", "model_name_or_path", "org/name", repo_type="model"):
            failing(404, {"X-Error-Code": "RepoNotFound"})
    with pytest.raises(RecipeError, match=r"may not read model org/name \(403 Forbidden\): log in with a token"):
        with explain_hub_errors("m.yaml", "model_name_or_path", "org/name", repo_type="model"):
            failing(403, {"X-Error-Message": "Fine-grained token lacks read access"})
    with pytest.raises(ValueError, match="not a Hub failure"):  # anything else passes through untouched
        with explain_hub_errors("m.yaml", "model_name_or_path", "org/name", repo_type="model"):
            raise ValueError("not a Hub failure")


# ----------------------------------------------------------------------------- a huge document


def test_a_key_that_appears_only_in_late_rows_does_not_break_reading(tmp_path):
    """The json builder fixes its schema on its first 10 MB block; real corpora have optional keys."""
    path = tmp_path / "web.jsonl"
    row = json.dumps({"text": "a web document about lakes and rivers " * 2}) + "\n"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(row * (11 * 2**20 // len(row)))
        fh.write(json.dumps({"text": "a late document", "source": "web", "meta": {"n": 1}}) + "\n")
    ds, report = load_source(SourceSpec(name="web", path=str(path)), "cap.yaml", "mixture")
    assert report.docs_read == report.kept == len(ds) == 11 * 2**20 // len(row) + 1
    assert ds[len(ds) - 1]["text"] == "a late document"
