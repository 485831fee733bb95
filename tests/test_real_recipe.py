"""The 15B recipe as the libraries it runs on would read it: what only a cluster run used to show, refused or
fixed here, each in a fast test (no model, no download: the Hub is faked at `datasets`' door or not reached)."""

from __future__ import annotations

import shutil

import pytest

from aurora_m.cli import main
from aurora_m.errors import RecipeError
from aurora_m.hub_errors import explain_hub_errors
from aurora_m.source_spec import SourceSpec, hub_read_args

from conftest import ROOT, edit_yaml

REAL = ROOT / "recipes" / "aurora-m-15b"


@pytest.fixture()
def real_copy(tmp_path):
    dest = tmp_path / "aurora-m-15b"
    shutil.copytree(REAL, dest)
    return dest


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- repos that ship a loading script
def test_a_loading_script_repo_read_by_id_is_refused_by_validate(real_copy, capsys):
    """bigscience/xP3 ships xP3.py: datasets >= 4 refuses the repo by id, data_files or not."""
    edit_yaml(real_copy / "cat.yaml", "dataset: bigscience/xP3, builder: json,", "dataset: bigscience/xP3,")
    assert main(["validate", str(real_copy)]) == 2
    err = one_line(capsys)
    for words in ("cat.yaml", "mixture[16].dataset", "bigscience/xP3", "xP3.py", "builder: json"):
        assert words in err, (words, err)


def test_datasets_own_refusal_of_a_loading_script_becomes_one_line(tmp_path):
    """What datasets itself raises for a folder that ships its script (as it does for the Hub repo)."""
    from datasets import load_dataset

    repo = tmp_path / "xP3"
    repo.mkdir()
    (repo / "xP3.py").write_text("import datasets\n")
    with pytest.raises(RecipeError) as caught:
        with explain_hub_errors("cat.yaml", "mixture[xp3-en].dataset", "bigscience/xP3"):
            load_dataset(str(repo), data_files="en/merged_en.jsonl")
    message = str(caught.value)
    assert message.startswith("cat.yaml: mixture[xp3-en].dataset: dataset bigscience/xP3 ships a loading script")
    assert "(xP3.py)" in message and "builder: json" in message


def test_the_packaged_builder_reads_the_repo_files_on_hf_paths():
    spec = SourceSpec.from_config(
        {"name": "xp3", "dataset": "bigscience/xP3", "builder": "json", "data_files": ["en/merged_en.jsonl"]}
    )
    assert hub_read_args(spec) == ("json", {"data_files": ["hf://datasets/bigscience/xP3/en/merged_en.jsonl"]})
    with pytest.raises(RecipeError, match=r"builder: json reads the files it is given"):
        SourceSpec.from_config({"name": "x", "dataset": "a/b", "builder": "json"})
    with pytest.raises(RecipeError, match=r"builder: expected one of json, parquet"):
        SourceSpec.from_config({"name": "x", "dataset": "a/b", "builder": "arrowz", "data_files": "x"})


# ----------------------------------------------------------------------------- Hub reads are streamed and bounded
class StreamingOnlyHub:
    """`datasets.load_dataset` for a Hub corpus far larger than any read: a non-streaming call would prepare the
    whole config (CulturaX's are terabytes), so it is refused as a failure; rows handed out are counted."""

    def __init__(self, rows: int = 100_000):
        self.rows, self.served, self.calls = rows, 0, []

    def __call__(self, path, *args, streaming=False, split=None, **options):
        from datasets import IterableDataset

        self.calls.append((path, split, options))
        if not streaming:
            raise AssertionError(
                f"load_dataset({path!r}, split={split!r}) without streaming prepares the whole config"
            )
        if "[" in str(split):
            raise ValueError(f"streaming takes a split name, got {split!r}")  # as datasets' IterableDataset does

        def rows():
            for i in range(self.rows):
                self.served += 1
                yield {"text": f"document number {i} of the web corpus"}

        return IterableDataset.from_generator(rows)


def test_an_eval_source_reads_its_first_rows_streaming(monkeypatch, tmp_path):
    """eval.yaml's perplexity_sources (`split: "train[:N]"`) used to call load_dataset without streaming."""
    import datasets

    from aurora_m.data.sources import read_source

    hub = StreamingOnlyHub()
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    spec = SourceSpec.from_config(
        {
            "name": "en",
            "dataset": "uonlp/CulturaX",
            "config_name": "en",
            "split": "train[:300]",
            "holdout_fraction": 0.5,
            "take": "heldout",
        },
        list_key="perplexity_sources",
    )
    docs, report = read_source(spec, "eval.yaml", "perplexity_sources")
    assert hub.calls[0] == ("uonlp/CulturaX", "train", {"name": "en"})
    assert report.docs_read == 300 and 0 < len(docs) < 300  # the held-out half of the first 300 rows
    assert hub.served <= 300 + 1  # the stream stops at the bound (one row may be pulled to find the end)


def test_a_streamed_read_is_pinned_to_the_commit_the_hub_serves(monkeypatch, tmp_path):
    """Cached rows belong to one commit: online, a read pins the repo's head (an updated repo is read again);
    offline, the commit the last online read saw serves the same rows from the cache."""
    import datasets
    import huggingface_hub
    from fake_hub import FakeHub
    from huggingface_hub import HfApi

    from aurora_m.data.sources import read_source

    hub = StreamingOnlyHub(rows=50)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    spec = SourceSpec.from_config({"name": "en", "dataset": "org/corpus"}, list_key="perplexity_sources")

    def online(on: bool) -> None:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            monkeypatch.setenv(name, "0" if on else "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", not on)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", not on)

    with FakeHub() as fake:
        online(True)
        HfApi().create_repo("org/corpus", repo_type="dataset")
        head = fake.repos["org/corpus"].branches["main"]
        read_source(spec, "eval.yaml", "perplexity_sources")
        assert hub.calls[-1][2] == {"revision": head} and hub.served == 50
        online(False)
        docs, _ = read_source(spec, "eval.yaml", "perplexity_sources")
        assert len(docs) == 50 and hub.served == 50 and len(hub.calls) == 1  # the cache, not the Hub
        online(True)
        fake.commit_outside("org/corpus", "main", {"data.jsonl": b"{}"})
        read_source(spec, "eval.yaml", "perplexity_sources")
        assert hub.calls[-1][2] == {"revision": fake.repos["org/corpus"].branches["main"]} != {"revision": head}


def test_a_hub_split_that_cannot_be_streamed_is_refused():
    with pytest.raises(RecipeError, match=r"perplexity_sources\[0\].split: a Hub source is streamed"):
        SourceSpec.from_config(
            {"name": "en", "dataset": "uonlp/CulturaX", "split": "train[:1%]"},
            where="perplexity_sources[0]",
            list_key="perplexity_sources",
        )


# ----------------------------------------------------------------------------- the launch each stage runs under
def test_validate_checks_the_stages_against_their_launch(capsys):
    """README once launched CAT with zero3: init_from full_state was refused only in on_train_begin."""
    assert main(["validate", str(REAL), "--accelerate-config", "zero3"]) == 2
    err = one_line(capsys)
    assert "cat.yaml: init_from: full_state under recipes/accelerate_configs/zero3.yaml (DEEPSPEED)" in err
    assert main(["validate", str(REAL), "--accelerate-config", "cap=fsdp2", "--accelerate-config", "cat=fsdp2"]) == 0
    assert main(["validate", str(REAL), "--accelerate-config", "sft=zero3"]) == 0  # SFT starts fresh: fine
    capsys.readouterr()
    assert main(["validate", str(REAL), "--accelerate-config", "kat=fsdp2"]) == 2
    assert "no stage 'kat'" in one_line(capsys)


@pytest.mark.parametrize(
    "content,words",
    [
        (b"distributed_type: [1, 2\n", "line 2: not valid YAML"),
        (b"distributed_type: FSDP\n# caf\xe9\n", "not UTF-8 text (byte 0xe9"),
        (b"- a list\n", "expected a mapping of keys to values"),
        (b"distributed_type: [FSDP]\n", "distributed_type: expected a name"),
    ],
)
def test_a_broken_accelerate_config_is_one_line(tmp_path, capsys, content, words):
    config = tmp_path / "mine.yaml"
    config.write_bytes(content)
    assert main(["validate", str(REAL), "--accelerate-config", str(config)]) == 2
    assert words in one_line(capsys)


# ----------------------------------------------------------------------------- replay and epochs, as budgeted
def test_a_replay_source_that_names_a_whole_corpus_is_refused(real_copy, capsys):
    """Replay takes its share by natural size: without files, the data step cleaned all of the-stack-dedup."""
    edit_yaml(real_copy / "cat.yaml", 'data_files: "data/*/data-00000-of-*.parquet", ', "")
    assert main(["validate", str(real_copy)]) == 2
    err = one_line(capsys)
    assert "cat.yaml: mixture[" in err and "].data_files: a replay source" in err and "bigcode/the-stack-dedup" in err


# Sizes of the small sources, from their cards (the large web, wiki and code sources are given room to spare):
# rows x tokens a row are the recipe comments' estimates; APIBench's from its files' bytes (36.8 MB of JSON,
# https://huggingface.co/datasets/gorilla-llm/APIBench/tree/main) with `code` half of them, ~3.5 bytes a token.
SMALL_SOURCES = {
    "gorilla": 36_800_000 // 2 // 3.5,
    "redteam": 5_000 * 0.8 * 200,  # paper.md: ~5,000 instructions; 80% trains
    "ultrachat": 207_865 * 1_300,
    "tulu-v2": 326_154 * 900,
    "metamath": 395_000 * 250,
    "helpsteer": 35_331 * 800,
    "anh": 800_000 / 12 * 400,  # its Japanese rows: ~1/12 of cross_lingual.jsonl (laion/Anh README)
}


@pytest.mark.parametrize("stage", ["cap", "cat"])
def test_the_budget_fits_every_sources_epoch_cap(stage):
    """The red-team train split (CAT) and APIBench (CAP) need more passes than the stage's max_epochs: 4."""
    from aurora_m.data.mixer import SourceSize, resolve_mixture
    from aurora_m.overrides import read_yaml

    config = read_yaml(REAL / f"{stage}.yaml")
    plenty = 10**12
    sizes = []
    for source in config["mixture"]:
        tokens = int(SMALL_SOURCES.get(source["name"], plenty))
        sizes.append(
            SourceSize(
                source["name"],
                tokens,
                tokens // config["seq_length"],
                weight=source.get("weight"),
                replay=source.get("replay", False),
                max_epochs=source.get("max_epochs"),
            )
        )
    rows = resolve_mixture(
        sizes,
        config["train_tokens"],
        config["seq_length"],
        replay_share=config["replay_share"],
        max_epochs=config["max_epochs"],
        config_file=f"{stage}.yaml",
    )
    assert sum(r.tokens for r in rows) == config["train_tokens"] // config["seq_length"] * config["seq_length"]


# ----------------------------------------------------------------------------- safety evaluation, as the paper's gap
def test_safety_evaluation_covers_the_languages_it_can_and_checks_training_for_every_set():
    """The 15B safety suite was English-only, with no over-refusal set; each set it reads must also be a leakage
    check of every training stage (a prompt trained on is no test)."""
    from aurora_m.overrides import read_yaml

    config = read_yaml(REAL / "eval.yaml")
    languages = {s.get("language") for s in config["safety_sources"]}
    assert {"en", "hi", "ja", "vi"} <= languages  # fi: no public set found (eval.yaml says so)
    assert config["benign_sources"], "over_refusal would stay `missing`"
    evaluated = {s["dataset"] for s in config["safety_sources"] + config["benign_sources"]}
    evaluated.discard("felfri/multilingual-biden-harris-redteam")  # its split is its own held-out side
    for stage in ("cap", "cat", "sft", "instruct"):
        checked = {s["dataset"] for s in read_yaml(REAL / f"{stage}.yaml")["contamination_sources"]}
        assert evaluated <= checked, (stage, evaluated - checked)


# ----------------------------------------------------------------------------- CAT's learning rate, second reading
def test_the_second_reading_of_cats_learning_rate_is_a_switch_that_validates(real_copy, capsys):
    """cap.yaml and cat.yaml carry `# reading 2:` lines; put in place of the keys they name, the recipe still
    validates, and the two stages then describe one schedule: CAP holds the peak, CAT decays it over its steps."""
    import yaml

    from aurora_m.budget import Budget

    switched = {}
    for stage in ("cap", "cat"):
        path = real_copy / f"{stage}.yaml"
        lines = path.read_text().splitlines()
        marker = "# reading 2: "
        reading = yaml.safe_load("\n".join(line[len(marker) :] for line in lines if line.startswith(marker)))
        assert reading, stage
        kept = [line for line in lines if line.split(":")[0] not in reading]
        path.write_text("\n".join(kept + [f"{k}: {json_value(v)}" for k, v in reading.items()]) + "\n")
        switched[stage] = reading
    assert main(["validate", str(real_copy)]) == 0, capsys.readouterr().err
    assert switched["cap"]["lr_scheduler_kwargs"]["num_decay_steps"] == 0  # CAP ends at its peak
    cat = yaml.safe_load((real_copy / "cat.yaml").read_text())
    steps = Budget(4, 8, 64, 2048, cat["train_tokens"]).steps
    assert switched["cat"]["lr_scheduler_kwargs"]["num_decay_steps"] == steps == 13_900
    assert switched["cat"]["learning_rate"] == yaml.safe_load((REAL / "cap.yaml").read_text())["learning_rate"]


def json_value(value) -> str:
    import json

    return json.dumps(value)


def test_a_stage_under_accelerate_launch_with_deepspeed_refuses_full_state_at_parse(monkeypatch):
    """Under `accelerate launch --config_file zero3.yaml` (scripts, or `aurora-m run`), the stage's parse refuses it
    before the data step, whatever is installed: the conflict comes first."""
    from aurora_m.extras import check_extras

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(RecipeError, match=r"^cat.yaml: init_from: full_state under accelerate config \(DEEPSPEED\)"):
        check_extras("cat.yaml", {"init_from": "full_state"})
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    check_extras("cat.yaml", {"init_from": "full_state"})  # plain launch, FSDP or one process: fine


def test_the_replay_files_are_a_bounded_part_as_datasets_resolves_them(tmp_path):
    """The replay globs, resolved by `datasets`' own pattern code over the repos' file names (RefinedWeb: 5,534
    train files; the-stack-dedup: data/<language>/data-NNNNN-of-MMMMM.parquet), take the parts the YAML says."""
    from datasets.data_files import resolve_pattern

    from aurora_m.overrides import read_yaml

    for n in range(5534):
        (tmp_path / "tiiuae/falcon-refinedweb/data").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"tiiuae/falcon-refinedweb/data/train-{n:05d}-of-05534-{n:016x}.parquet").touch()
    for language, files in {"python": 144, "c": 126, "markdown": 100, "ada": 1}.items():
        folder = tmp_path / "bigcode/the-stack-dedup/data" / language
        folder.mkdir(parents=True)
        for n in range(files):
            (folder / f"data-{n:05d}-of-{files:05d}.parquet").touch()

    def resolved(stage: str, name: str) -> list[str]:
        source = next(s for s in read_yaml(REAL / f"{stage}.yaml")["mixture"] if s["name"] == name)
        return resolve_pattern(source["data_files"], base_path=str(tmp_path / source["dataset"]))

    assert len(resolved("cap", "refinedweb")) == 400  # files 0-399 of 5,534
    assert len(resolved("cap", "stack-replay")) == 2 + 2 + 2 + 1  # the first two of each language
    assert len(resolved("cat", "stack-replay")) == 4  # the first of each language
