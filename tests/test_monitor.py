"""Monitoring a pretraining run on the tiny CAP: held-out loss per language, the forgetting monitor, the curves,
and the held-out windows the data step packs (held-out documents only, none of them trained on)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from aurora_m.args import MixtureArguments, ModelArguments
from aurora_m.data.build import build_pretrain_dataset
from aurora_m.data.corpus import build_corpus
from aurora_m.data.mixture import packed_collator
from aurora_m.data.sources import in_heldout
from aurora_m.data.stream import ds_files, open_stream
from aurora_m.errors import RecipeError
from aurora_m.layout import DatasetDir, StageDir
from aurora_m.plots import plot_curves
from aurora_m.source_spec import LANGUAGES
from aurora_m.stage_checks import parse_stage
from aurora_m.train.monitor import (
    PROBES,
    ForgettingMonitor,
    Probe,
    heldout_eval_sets,
    monitor_callbacks,
    register_probe,
)
from aurora_m.train.pretrain import stream_trainer

ROOT = Path(__file__).resolve().parents[1]
CAP = ROOT / "recipes" / "aurora-m-tiny" / "cap.yaml"
TINY_DATA = CAP.parent / "data"
STEPS, EVAL_STEPS = 20, 10
# 20 steps x 8 sequences x 128 tokens: the budget matches the steps
OVERRIDES = [
    "--max_steps",
    str(STEPS),
    "--train_tokens",
    str(STEPS * 8 * 128),
    "--eval_strategy",
    "steps",
    "--eval_steps",
    str(EVAL_STEPS),
    "--eval_on_start",
    "true",
    "--save_steps",
    str(EVAL_STEPS),
]


def parse(out: Path, *extra: str):
    return parse_stage(CAP, "pretrain", ["--output_dir", str(out), *OVERRIDES, *extra])


def monitored_trainer(model_args, mix_args, training_args):
    """The stage's Trainer with the held-out sets and monitors attached, as pretrain wires them."""
    from transformers import AutoTokenizer

    from aurora_m.train.model import load_model

    dirs = StageDir(training_args.output_dir)
    if not dirs.data.is_built():
        build_pretrain_dataset(model_args, mix_args, dirs.data.root, CAP)
    tokenizer = AutoTokenizer.from_pretrained(dirs.data.tokenizer)
    trainer = stream_trainer()(
        model=load_model(model_args, tokenizer, CAP),
        args=training_args,
        train_dataset=open_stream(dirs.data),
        eval_dataset=heldout_eval_sets(dirs.data, training_args),
        data_collator=packed_collator,
        processing_class=tokenizer,
    )
    for callback in monitor_callbacks(trainer, dirs, mix_args, "tiny CAP", CAP):
        trainer.add_callback(callback)
    return trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from transformers import TrainerCallback

    out = tmp_path_factory.mktemp("monitor") / "cap"
    trainer = monitored_trainer(*parse(out))
    curves, seen = StageDir(out).curves_png, {}

    class CurvesSeen(TrainerCallback):  # whether curves.png was there as each step began
        def on_step_begin(self, args, state, control, **kwargs):
            seen[state.global_step] = curves.is_file()

    trainer.add_callback(CurvesSeen())
    trainer.train()
    trainer.curves_seen = seen
    return trainer


def at_step(history: list[dict], step: int) -> dict:
    merged = {}
    for entry in history:
        if entry["step"] == step:
            merged.update(entry)
    return merged


def test_held_out_loss_of_every_language_is_logged_at_start_and_every_eval_steps(run):
    history = run.state.log_history
    for step in range(0, STEPS + 1, EVAL_STEPS):
        logged = at_step(history, step)
        for lang in LANGUAGES:
            assert math.isfinite(logged[f"eval_{lang}_loss"]), (step, lang)
    # the model learns: held-out loss falls from the random init (ln 4096 ~ 8.3)
    assert at_step(history, STEPS)["eval_en_loss"] < at_step(history, 0)["eval_en_loss"] - 0.5


def test_forgetting_ratio_is_code_perplexity_over_its_first_value(run):
    history = run.state.log_history
    first = at_step(history, 0)
    assert first["forgetting/code_ppl_ratio"] == 1.0
    assert first["forgetting/code_ppl"] == pytest.approx(math.exp(first["eval_code_loss"]), rel=1e-9)
    logged = [e["step"] for e in history if "forgetting/code_ppl" in e]
    assert logged == list(range(0, STEPS + 1, EVAL_STEPS))
    for step in logged[1:]:
        now = at_step(history, step)
        assert now["forgetting/code_ppl"] == pytest.approx(math.exp(now["eval_code_loss"]), rel=1e-9)
        assert now["forgetting/code_ppl_ratio"] == pytest.approx(
            math.exp(now["eval_code_loss"]) / math.exp(first["eval_code_loss"]), rel=1e-9
        )
        assert now["forgetting/code_ppl_ratio"] != 1.0


def test_evaluating_does_not_change_what_is_trained(run, tmp_path):
    """Evaluation draws from torch's generators and dropout draws next: the same run without evaluation ends
    with the very same weights (eval_steps is a monitoring choice, not a training one)."""
    import torch

    data = StageDir(run.args.output_dir).data.root
    plain = monitored_trainer(*parse(tmp_path / "cap", "--eval_strategy", "no", "--dataset_dir", str(data)))
    assert plain.eval_dataset is None
    plain.train()
    theirs = plain.model.state_dict()
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


@pytest.fixture()
def monitor_log(caplog):
    """Warnings of the monitor, whatever an earlier test did to the package logger's propagation."""
    logger = logging.getLogger("aurora_m.train.monitor")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="aurora_m.train.monitor")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_a_ratio_past_the_threshold_warns_and_a_new_monitor_keeps_the_first_value(run, monitor_log):
    """A real evaluation after training, by a monitor made afresh (as after a resume): its baseline is the
    step-0 value read back from log_history, so the ratio is not 1; past the threshold it warns."""
    history = run.state.log_history
    ratio = [e for e in history if "forgetting/code_ppl_ratio" in e][-1]["forgetting/code_ppl_ratio"]
    baseline = at_step(history, 0)["forgetting/code_ppl"]
    run.pop_callback(ForgettingMonitor)
    for threshold, warns in ((ratio * 2, False), (ratio / 2, True)):
        monitor_log.clear()
        run.add_callback(ForgettingMonitor(run, ["code_ppl"], threshold))
        metrics = run.evaluate()
        run.pop_callback(ForgettingMonitor)
        last = run.state.log_history[-1]
        assert last["forgetting/code_ppl"] == pytest.approx(math.exp(metrics["eval_code_loss"]), rel=1e-9)
        assert last["forgetting/code_ppl_ratio"] == pytest.approx(last["forgetting/code_ppl"] / baseline, rel=1e-9)
        warnings = [r for r in monitor_log.records if r.levelno == logging.WARNING and "forgetting" in r.message]
        assert bool(warnings) == warns, (threshold, ratio, [r.message for r in warnings])
    assert "code_ppl" in warnings[0].message and "forgetting_threshold" in warnings[0].message


def test_a_registered_probe_is_logged_and_a_lower_is_worse_probe_warns_when_it_falls(run, monitor_log):
    """The probe registry: what the evaluation issue's HumanEval pass@1 will plug into (higher is better)."""
    probe = register_probe(Probe("fi_inverse_loss", lambda trainer, m: 1 / m["eval_fi_loss"], higher_is_worse=False))
    try:
        run.state.log_history.append({"forgetting/fi_inverse_loss": 10.0, "step": 0})  # a first value far above
        run.add_callback(ForgettingMonitor(run, [probe.name], threshold=1.5))
        metrics = run.evaluate()
        last = run.state.log_history[-1]
        assert last["forgetting/fi_inverse_loss"] == pytest.approx(1 / metrics["eval_fi_loss"])
        assert last["forgetting/fi_inverse_loss_ratio"] == pytest.approx(1 / metrics["eval_fi_loss"] / 10.0)
        assert any("fi_inverse_loss" in r.message for r in monitor_log.records if r.levelno == logging.WARNING)
    finally:
        run.pop_callback(ForgettingMonitor)
        del PROBES[probe.name]


def test_curves_png_is_drawn_in_the_stage_folder(run):
    import matplotlib.image

    path = StageDir(run.args.output_dir).curves_png
    # drawn by the save at step 10 (not before), and again at the end
    assert [step for step, there in run.curves_seen.items() if there] == list(range(EVAL_STEPS, STEPS))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # four panels side by side: training loss, learning rate, held-out loss, forgetting ratio
    assert matplotlib.image.imread(path).shape[1] == int((3.6 * 4 + 0.6) * 100)
    assert not list(path.parent.glob(f".{path.name}*"))  # no temporary left behind
    assert plot_curves([], path.with_name("empty.png"), "nothing yet") is None


def test_held_out_windows_hold_only_held_out_documents_and_none_is_trained_on(run):
    from aurora_m.data.clean import PiiAnonymizer

    data = StageDir(run.args.output_dir).data
    note = json.loads(data.heldout_json.read_text())
    eos = run.processing_class.eos_token_id
    pii = PiiAnonymizer()
    shards = [np.fromfile(p, dtype="<u2").tobytes() for lang in LANGUAGES for p in ds_files(data.source_tokens(lang))]
    train_windows = {np.asarray(item["input_ids"]).tobytes() for item in open_stream(data).iterate()}
    for lang in LANGUAGES:
        windows = np.load(data.heldout_tokens(lang))
        assert windows.shape == (note["languages"][lang]["windows"], 128) and len(windows) > 0
        held_out = {
            pii.anonymise(r["text"])[0]
            for r in map(json.loads, (TINY_DATA / f"{lang}.jsonl").open())
            if in_heldout(r["text"], 0.1)
        }
        flat = windows.reshape(-1)
        ends = np.flatnonzero(flat == eos)
        documents = np.split(flat, ends + 1)[: len(ends)]  # the piece after the last EOS is cut by the window
        assert len(documents) >= 2, lang
        for ids in documents:
            assert run.processing_class.decode(ids[:-1].tolist()) in held_out, lang
            needle = ids[:-1].astype("<u2").tobytes()
            for shard in shards:  # a held-out document appears nowhere in the training tokens
                at = shard.find(needle)
                while at != -1:
                    assert at % 2, (lang, "held-out document found in a training shard")
                    at = shard.find(needle, at + 1)
        assert not {w.astype(np.int64).tobytes() for w in windows} & train_windows


def test_a_data_folder_without_held_out_windows_still_opens_without_monitoring(run, tmp_path, monitor_log):
    from transformers.trainer_utils import IntervalStrategy

    old = DatasetDir(tmp_path / "data")
    shutil.copytree(StageDir(run.args.output_dir).data.root, old.root)
    shutil.rmtree(old.heldout)  # a folder built before held-out monitoring
    _, mix_args, args = parse(tmp_path / "cap")
    assert args.eval_strategy == IntervalStrategy.STEPS
    assert heldout_eval_sets(old, args) is None
    assert args.eval_strategy == IntervalStrategy.NO and not args.eval_on_start
    assert any("no held-out loss" in r.message for r in monitor_log.records)
    trainer = stream_trainer()(
        model=run.model,
        args=args,
        train_dataset=open_stream(old),
        eval_dataset=None,
        data_collator=packed_collator,
        processing_class=run.processing_class,
    )
    callbacks = monitor_callbacks(trainer, StageDir(tmp_path / "cap"), mix_args)
    assert [type(c).__name__ for c in callbacks] == ["CurvesPlot"]


def test_eval_strategy_no_means_no_evaluation_not_even_at_start(run, tmp_path):
    from transformers.trainer_utils import IntervalStrategy

    _, _, args = parse(tmp_path / "cap", "--eval_strategy", "no")
    assert args.eval_on_start  # the recipe's, which Trainer would honour with an eval set
    assert heldout_eval_sets(StageDir(run.args.output_dir).data, args) is None
    assert args.eval_strategy == IntervalStrategy.NO and not args.eval_on_start


def test_unknown_probe_and_bad_threshold_are_one_line_errors(run):
    dirs = StageDir(run.args.output_dir)
    with pytest.raises(RecipeError, match=r"cap.yaml: forgetting_probes: unknown probe 'humaneval' \(known: code_ppl"):
        monitor_callbacks(run, dirs, MixtureArguments(forgetting_probes=["humaneval"]), config_file=CAP)
    with pytest.raises(RecipeError, match="cap.yaml: forgetting_threshold: expected a positive factor"):
        monitor_callbacks(run, dirs, MixtureArguments(forgetting_threshold=0), config_file=CAP)


def build(out: Path, mix: list[dict], **keys) -> DatasetDir:
    tokenizer = [str(TINY_DATA / f"{lang}.jsonl") for lang in ("en", "fi")]
    args = MixtureArguments(mixture=mix, **{"seq_length": 64, "train_tokens": 64 * 100, "max_epochs": 20, **keys})
    return DatasetDir(build_corpus(ModelArguments(tokenizer_train_files=tokenizer), args, out))


def test_windows_are_capped_and_a_language_held_out_at_zero_gets_none(tmp_path, logs):
    data = build(
        tmp_path / "data",
        [
            {"name": "en", "path": str(TINY_DATA / "en.jsonl"), "holdout_fraction": 0.1},
            {"name": "fi", "path": str(TINY_DATA / "fi.jsonl")},
        ],
        heldout_blocks=4,
    )
    note = json.loads(data.heldout_json.read_text())["languages"]
    assert note["en"]["windows"] == 4 and np.load(data.heldout_tokens("en")).shape == (4, 64)  # 16 were there
    assert note["fi"] == {"windows": 0, "documents": 0, "tokens": 0, "sources": []}
    assert not data.heldout_tokens("fi").exists()
    assert "fi 0 (holdout_fraction 0)" in logs.text
    assert json.loads(data.filter_report_json.read_text())["heldout_windows"] == {"en": 4, "fi": 0}
    assert list(heldout_eval_sets(data)) == ["en"]


def test_heldout_blocks_zero_writes_no_windows(tmp_path):
    data = build(
        tmp_path / "data",
        [{"name": "en", "path": str(TINY_DATA / "en.jsonl"), "holdout_fraction": 0.1}],
        heldout_blocks=0,
    )
    assert not data.heldout.exists() and data.is_built()
    assert heldout_eval_sets(data) is None
