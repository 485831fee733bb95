"""Adding a kind with its own source format, and adding an engine, is table entries plus new modules.

Everything below lives in this test file: a ``preference`` source format (prompt/chosen/rejected, as a DPO
kind reads), a source list that asks for it, a ``toy-dpo`` kind whose data step reads its sources through the
project's own reader, and a ``toy-engine`` that takes over the kind's train step, adds a key of its own,
leaves checkpoints the pipeline guards and sets aside, and offers an ``aurora-m convert`` direction. They are
added with the public ``register_*`` calls only (no patching, no edit to a project file), then run end to end
through ``aurora-m run`` and checked by ``aurora-m validate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aurora_m.cli import build_parser, main
from aurora_m.data.intake import document_fields
from aurora_m.data.sources import read_source
from aurora_m.errors import RecipeError
from aurora_m.layout import StageDir
from aurora_m.source_formats import MISSING_FIELD, NOT_TEXT, SourceFormat, read_fields, register_format
from aurora_m.source_formats import unregister_format as drop_format
from aurora_m.source_spec import SOURCE_LISTS, SourceList, SourceSpec, register_source_list, source_specs
from aurora_m.stages import Engine, StageKind, register_engine, register_kind, unregister_engine, unregister_kind

ROWS = [
    {"question": "Capital of France?", "good": "Paris.", "bad": "Berlin."},
    {"question": "2 + 2?", "good": "Four.", "bad": "Five."},
    {"question": "Largest planet?", "good": "Jupiter.", "bad": 7},  # not text: counted, not kept
    {"question": "Colour of the sky?", "good": "Blue.", "bad": "   "},  # blank: counted, not kept
]


# ----------------------------------------------------------------------------- the format
def read_preference(spec, row):
    values, reason = read_fields(row, [spec.option(k) for k in ("prompt_field", "chosen_field", "rejected_field")])
    return (tuple(v.strip() for v in values), None) if values else (None, reason)


PREFERENCE = SourceFormat(
    name="preference",
    columns=lambda spec: {k: [spec.option(k)] for k in ("prompt_field", "chosen_field", "rejected_field")},
    read=read_preference,
    products={
        "preference": lambda r: {"prompt": r[0], "chosen": r[1], "rejected": r[2]},
        "text": lambda r: f"{r[0]}\n{r[1]}",  # what a pretraining mixture would read
        "prompt": lambda r: r[0],
    },
    options={"prompt_field": "prompt", "chosen_field": "chosen", "rejected_field": "rejected"},
    help="a prompt with a chosen and a rejected answer",
)


# ----------------------------------------------------------------------------- the kind
@dataclass
class PreferenceArguments:
    preference_sources: list[dict] = field(default_factory=list)
    beta: float = 0.1
    output_dir: str | None = None


def toy_data_step(ctx):
    """What a DPO kind's data step does: every source through the project's reader, as preference rows."""
    args = ctx.parse()[0]
    rows = []
    for spec in source_specs(args.preference_sources, "preference_sources", ctx.config):
        docs, report = read_source(spec, str(ctx.config), "preference_sources")
        rows += docs.give("preference")
        (ctx.dirs.root / "report.json").parent.mkdir(parents=True, exist_ok=True)
        (ctx.dirs.root / "report.json").write_text(json.dumps(report.__dict__))
    (ctx.dirs.root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def toy_card(step) -> str:
    """The kind's own card section: what its data step kept, read from the file that step wrote."""
    report = json.loads((Path(step.stage_dir) / "report.json").read_text())
    return f"{report['kept']} preference pairs kept of {report['docs_read']} rows read."


def toy_train_step(ctx):
    args = ctx.parse()[0]
    pairs = (ctx.dirs.root / "pairs.jsonl").read_text().splitlines()
    (ctx.dirs.root / "trained.json").write_text(json.dumps({"engine": "transformers", "pairs": len(pairs)}))
    assert args.beta > 0


# ----------------------------------------------------------------------------- the engine
@dataclass
class ShardArguments:
    shards: int = 1


def engine_train_step(ctx):
    args, shard_args = ctx.parse()
    pairs = (ctx.dirs.root / "pairs.jsonl").read_text().splitlines()
    for step in (1, 2):  # a checkpoint per step, as an engine that resumes leaves them
        (ctx.dirs.root / "toy-ckpt" / str(step)).mkdir(parents=True, exist_ok=True)
    record = {"engine": ctx.engine, "pairs": len(pairs), "shards": shard_args.shards, "beta": args.beta}
    (ctx.dirs.root / "trained.json").write_text(json.dumps(record))


def engine_checkpoints(dirs: StageDir) -> list[Path]:
    folder = dirs.root / "toy-ckpt"
    return (
        sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) if folder.is_dir() else []
    )


def engine_set_aside(dirs: StageDir, aside: Path) -> None:
    (dirs.root / "toy-ckpt").rename(aside / "toy-ckpt")


def engine_convert(directions) -> None:
    to_hf = directions.add_parser("toy-to-hf", help="a toy checkpoint as a transformers folder")
    to_hf.add_argument("src")
    to_hf.add_argument("dst")
    to_hf.set_defaults(convert=lambda a: Path(a.dst))


TOY_ENGINE = Engine(
    name="toy-engine",
    module="json",  # "installed" everywhere
    install="nothing to install",
    runners={"toy-dpo": {"train": engine_train_step}},
    arguments=ShardArguments,
    checkpoints=engine_checkpoints,
    set_aside=engine_set_aside,
    convert=engine_convert,
)


@pytest.fixture()
def extension():
    register_format(PREFERENCE)
    register_source_list(SourceList("preference_sources", "preference", weights=True))
    register_engine(TOY_ENGINE)
    register_kind(
        StageKind(
            name="toy-dpo",
            dataclasses=lambda: (PreferenceArguments,),
            steps=("data", "train"),
            source_key="preference_sources",
            resumable_step="train",
            engine_steps=("train",),
            runners={"transformers": {"data": toy_data_step, "train": toy_train_step}},
            card=toy_card,
        )
    )
    yield
    unregister_kind("toy-dpo")
    unregister_engine("toy-engine")
    SOURCE_LISTS.pop("preference_sources")
    drop_format("preference")


@pytest.fixture()
def recipe(tmp_path, extension) -> Path:
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    source = "preference_sources:\n  - {name: prefs, path: prefs.jsonl, format: preference, prompt_field: question"
    (folder / "a.yaml").write_text(f"{source}, chosen_field: good, rejected_field: bad}}\nbeta: 0.2\n")
    (folder / "b.yaml").write_text(f"{source}, chosen_field: good, rejected_field: bad}}\nshards: 4\n")
    (folder / "pipeline.yaml").write_text(
        "name: toy-dpo\nstages:\n"
        "  - {name: a, kind: toy-dpo, config: a.yaml}\n"
        "  - {name: b, kind: toy-dpo, config: b.yaml, engine: toy-engine}\n"
    )
    return folder


def run(recipe: Path, out: Path, *extra: str) -> int:
    return main(["run", str(recipe), "--output-dir", str(out), *extra])


def test_a_new_kind_with_its_own_format_and_a_new_engine_run_end_to_end(recipe, tmp_path):
    assert main(["validate", str(recipe)]) == 0
    out = tmp_path / "run"
    assert run(recipe, out) == 0
    pairs = [json.loads(line) for line in (out / "a" / "pairs.jsonl").read_text().splitlines()]
    assert pairs == [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Berlin."},
        {"prompt": "2 + 2?", "chosen": "Four.", "rejected": "Five."},
    ]
    report = json.loads((out / "a" / "report.json").read_text())
    assert (report["docs_read"], report["kept"], report["removed_not_text"], report["removed_empty"]) == (4, 2, 1, 1)
    assert json.loads((out / "a" / "trained.json").read_text()) == {"engine": "transformers", "pairs": 2}
    # the engine took over the train step only; the kind's own data step served its stage too
    assert (out / "b" / "pairs.jsonl").read_text() == (out / "a" / "pairs.jsonl").read_text()
    trained = json.loads((out / "b" / "trained.json").read_text())
    assert trained == {"engine": "toy-engine", "pairs": 2, "shards": 4, "beta": 0.1}
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [("a", "completed"), ("b", "completed")]


def test_the_engines_checkpoints_are_guarded_and_set_aside(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(recipe, out) == 0
    (recipe / "b.yaml").write_text((recipe / "b.yaml").read_text().replace("shards: 4", "shards: 8"))
    capsys.readouterr()
    assert run(recipe, out) == 2
    err = capsys.readouterr().err
    assert "shards" in err and "since toy-ckpt/2" in err and "--restart b" in err, err
    assert run(recipe, out, "--restart", "b") == 0
    (aside,) = (out / "b").glob("set-aside-restart-*")
    assert sorted(p.name for p in (aside / "toy-ckpt").iterdir()) == ["1", "2"]
    assert json.loads((out / "b" / "trained.json").read_text())["shards"] == 8


def test_an_engines_key_on_another_engine_and_a_format_a_list_cannot_use_are_one_line(recipe, capsys):
    (recipe / "a.yaml").write_text((recipe / "a.yaml").read_text() + "shards: 2\n")
    assert main(["validate", str(recipe)]) == 2
    assert "a.yaml: shards: a key of the toy-engine engine" in capsys.readouterr().err
    # the preference format gives no chat: an SFT list refuses it, naming the formats that would do
    with pytest.raises(RecipeError, match=r"sft_sources needs sources that give chat: expected one of instruction"):
        SourceSpec.from_config({"name": "p", "path": "x.jsonl", "format": "preference"}, list_key="sft_sources")
    # its own keys belong to it alone
    with pytest.raises(RecipeError, match="unknown key"):
        SourceSpec.from_config({"name": "t", "path": "x.jsonl", "chosen_field": "good"}, list_key="mixture")


def test_the_new_format_serves_the_existing_readers(extension):
    spec = SourceSpec.from_config(
        {"name": "p", "path": "x.jsonl", "format": "preference", "language": "en"}, list_key="mixture"
    )
    assert document_fields(spec, {"prompt": "Q", "chosen": "A", "rejected": "B"}) == ("Q\nA", None)
    assert document_fields(spec, {"prompt": "Q", "chosen": "A"}) == (None, MISSING_FIELD)
    assert document_fields(spec, {"prompt": "Q", "chosen": ["A"], "rejected": "B"}) == (None, NOT_TEXT)


def test_the_engines_conversion_is_an_aurora_m_convert_direction(extension):
    parser = build_parser()
    args = parser.parse_args(["convert", "toy-to-hf", "src", "dst"])
    assert args.convert(args) == Path("dst")


def test_a_kinds_own_card_section_reaches_the_model_card(recipe, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData

    from aurora_m.hub.card import _stage_facts
    from aurora_m.hub.export import LineageStep

    out = tmp_path / "run"
    assert run(recipe, out) == 0
    steps = [LineageStep(stage=name, kind="toy-dpo", variant="v", stage_dir=str(out / name)) for name in "ab"]
    facts = [_stage_facts(step, {}) for step in steps]
    assert [f["report"] for f in facts] == ["2 preference pairs kept of 4 rows read."] * 2
    template = (Path(__file__).parents[1] / "aurora_m" / "hub" / "card_template.md").read_text()
    section = template[template.index("## Training data") : template.index("## Training procedure")]
    card = ModelCard.from_template(ModelCardData(), template_str=section, lineage=facts)
    assert "### `b`\n\n2 preference pairs kept of 4 rows read." in str(card)
