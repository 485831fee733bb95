"""What a nanotron stage trains on (no nanotron needed): the data step's stream cut into each data-parallel rank's
micro batches, labels as transformers computes its loss, resume from nanotron's consumed samples, the pipeline
ranks that read nothing, and the per-folder token counts nanotron keeps in its checkpoint metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurora_m.data.mixer import MixRow
from aurora_m.data.stream import PackedStream, build_index
from aurora_m.engines.nanotron.batches import Shape, StageBatches, first_micro_batch
from aurora_m.errors import RecipeError

SEQ = 8
AVAILABLE = {"en": 40, "code": 25, "fi": 10}  # windows in each source's shards


@pytest.fixture()
def stream(tmp_path) -> PackedStream:
    """Three sources whose every token says where it came from: 1000 x source + window number."""
    dirs = {}
    for s, (name, windows) in enumerate(AVAILABLE.items()):
        folder = dirs[name] = tmp_path / "tokens" / name
        folder.mkdir(parents=True)
        ids = np.repeat(1000 * (s + 1) + np.arange(windows), SEQ).astype("<u2")
        half = (windows // 2) * SEQ  # two shard files, to cross a file boundary
        ids[:half].tofile(folder / "00000_tokens.ds")
        ids[half:].tofile(folder / "00001_tokens.ds")
    drawn = {"en": 60, "code": 30, "fi": 6}  # 96 windows: en repeats, fi is partly drawn
    rows = [
        MixRow(
            name=n,
            rule="weight",
            share=w / 96,
            windows=w,
            tokens=w * SEQ,
            epochs=w / AVAILABLE[n],
            available_tokens=AVAILABLE[n] * SEQ,
            available_windows=AVAILABLE[n],
        )
        for n, w in drawn.items()
    ]
    build_index(rows, seed=7, path=tmp_path / "index.npy")
    return PackedStream(tmp_path / "index.npy", dirs, SEQ)


def _folders(stream) -> dict[str, str]:
    return {name: f"/data/tokens/{name}" for name in stream.names}


def _ranks(stream, shape: Shape, **kwargs) -> list[StageBatches]:
    return [StageBatches(stream, shape, r, folders=_folders(stream), **kwargs) for r in range(shape.dp)]


def test_every_step_trains_its_global_batch_once_split_in_contiguous_rank_blocks(stream):
    shape = Shape(micro_batch=2, accumulation=3, dp=2)  # G = 12: 8 whole steps of the 96 windows
    ranks = _ranks(stream, shape)
    assert ranks[0].steps == 8 and len(ranks[0]) == 8 * 3
    for step in range(ranks[0].steps):
        seen = []
        for r, batches in enumerate(ranks):
            mine = [p for m in range(3) for p in batches.positions(step * 3 + m)]
            assert mine == list(range(step * 12 + r * 6, step * 12 + (r + 1) * 6))  # contiguous, in order
            seen += mine
        assert sorted(seen) == list(range(step * 12, (step + 1) * 12))
    # and the tokens are the stream's windows at those positions (the transformers engine's sequences)
    batch = ranks[1][4]  # rank 1, step 1, micro batch 1
    for row, position in zip(batch["input_ids"], ranks[1].positions(4)):
        assert torch.equal(row, torch.from_numpy(stream[position]["input_ids"]))
    with pytest.raises(IndexError, match="outside the stage's 24"):
        ranks[0][24]


def test_labels_are_the_next_tokens_of_the_window_and_the_last_is_masked(stream):
    batch = StageBatches(stream, Shape(4, 1, 1), 0, folders=_folders(stream))[0]
    ids, labels, mask = batch["input_ids"], batch["label_ids"], batch["label_mask"]
    assert ids.shape == labels.shape == mask.shape == (4, SEQ) and ids.dtype == labels.dtype == torch.int64
    assert batch["input_mask"].all() and batch["input_mask"].dtype == torch.bool
    assert torch.equal(labels[:, :-1], ids[:, 1:]) and mask[:, :-1].all() and not mask[:, -1].any()


def test_the_masked_loss_is_the_loss_transformers_computes_on_the_same_windows(stream):
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(
        GPTBigCodeConfig(vocab_size=4000, n_positions=SEQ, n_embd=32, n_layer=2, n_head=4, multi_query=True)
    ).eval()
    batch = StageBatches(stream, Shape(3, 1, 1), 0, folders=_folders(stream))[2]
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        logits = model(input_ids=batch["input_ids"]).logits
    per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["label_ids"].flatten(), reduction="none")
    mask = batch["label_mask"].flatten()
    ours = (per_token * mask).sum() / mask.sum()  # how nanotron's loss block reduces with label_mask
    assert torch.allclose(ours, expected, atol=1e-6), (ours, expected)


def test_a_resumed_stage_carries_on_after_what_it_consumed_and_refuses_another_batch_shape(stream):
    shape = Shape(2, 2, 2)  # G = 8
    fresh, resumed = (StageBatches(stream, shape, 1, folders=_folders(stream), consumed_samples=c) for c in (0, 24))
    assert resumed.first == 3 * 2 and list(resumed.sampler()) == list(fresh.sampler())[6:]
    assert resumed.positions(resumed.first)[0] == 24 + 4  # step 3, rank 1's block
    assert first_micro_batch(0, shape, "x") == 0
    with pytest.raises(RecipeError, match="not a whole number of global batches of 8 .*batch 2 x accumulation 2"):
        StageBatches(stream, shape, 0, folders=_folders(stream), consumed_samples=12)
    with pytest.raises(ValueError, match="dp rank 2 outside"):
        StageBatches(stream, shape, 2, folders=_folders(stream))


def test_pipeline_ranks_that_hold_no_inputs_or_labels_get_pointers_and_read_nothing(stream, monkeypatch):
    def pointer(group_rank):
        return ("pointer to", group_rank)

    first = StageBatches(
        stream, Shape(2, 1, 1), 0, folders=_folders(stream), reads_labels=False, pointer=pointer, output_rank=3
    )
    middle = StageBatches(
        stream,
        Shape(2, 1, 1),
        0,
        folders=_folders(stream),
        reads_inputs=False,
        reads_labels=False,
        pointer=pointer,
        input_rank=0,
        output_rank=3,
    )
    assert first[0]["label_ids"] == first[0]["label_mask"] == ("pointer to", 3)
    assert isinstance(first[0]["input_ids"], torch.Tensor)
    monkeypatch.setattr(PackedStream, "__getitem__", lambda *a: pytest.fail("a middle rank read a window"))
    assert middle[0] == {
        "input_ids": ("pointer to", 0),
        "input_mask": ("pointer to", 0),
        "label_ids": ("pointer to", 3),
        "label_mask": ("pointer to", 3),
    }
    with pytest.raises(ValueError, match="pointer factory"):
        StageBatches(stream, Shape(2, 1, 1), 0, folders=_folders(stream), reads_inputs=False)


def test_consumption_counts_every_ranks_tokens_per_folder_from_the_stage_start(stream):
    shape = Shape(2, 1, 2)  # G = 4
    index = np.load(stream.index_path)
    # a stage that starts at training step 11 (after an upstream's 10), resumed after 5 of its own steps
    batches = StageBatches(stream, shape, 0, folders=_folders(stream), start_training_step=11, consumed_samples=20)

    def expected(end):
        counts = np.bincount(index[:end, 0], minlength=3) * SEQ
        return {f"/data/tokens/{n}": {"tokens": int(c)} for n, c in zip(stream.names, counts) if c}

    assert batches.get_consumption_stats() == expected(20)
    for step in range(16, 19):  # nanotron's global step numbering, samples counted from step 1
        batches.update_consumption_metrics((step - 1) * 4, step * 4, SEQ)
    stats = batches.get_consumption_stats()
    assert stats == expected(32)
    # nanotron's own check on save: tokens over the folders == consumed samples x sequence length
    assert sum(s["tokens"] for s in stats.values()) == 32 * SEQ


# ----------------------------------------------------------------------------- before a launch starts any GPU
def _config(train_steps=8, micro=2, accumulation=1, dp=2, first=1) -> dict:
    return {
        "tokens": {
            "train_steps": train_steps,
            "micro_batch_size": micro,
            "batch_accumulation_per_replica": accumulation,
        },
        "parallelism": {"dp": dp},
        "data_stages": [{"start_training_step": first}],
    }


def test_a_launch_is_refused_when_the_data_does_not_fit_the_config(stream, tmp_path):
    from types import SimpleNamespace

    from aurora_m.engines.nanotron.runner import check_data

    data = SimpleNamespace(index=stream.index_path, mixture_json=tmp_path / "mixture.json")
    mixture = {"seq_length": SEQ}
    check_data(mixture, data, SimpleNamespace(seq_length=SEQ), _config(train_steps=24), "cap.yaml")  # 96 = 24 x 4
    with pytest.raises(RecipeError, match="built windows of 8 tokens, the stage trains on 16"):
        check_data(mixture, data, SimpleNamespace(seq_length=16), _config(), "cap.yaml")
    with pytest.raises(RecipeError, match=r"holds 96 sequences, fewer than this stage's 25 steps x 4 .* = 100"):
        check_data(mixture, data, SimpleNamespace(seq_length=SEQ), _config(train_steps=25), "cap.yaml")
    # CAT after CAP's 10 steps: only its own steps count
    check_data(mixture, data, SimpleNamespace(seq_length=SEQ), _config(train_steps=34, first=11), "cat.yaml")


def test_a_resume_with_another_global_batch_or_past_the_budget_is_refused_before_launch(tmp_path):
    import json

    from aurora_m.engines.nanotron.runner import check_own_resume

    last = tmp_path / "nanotron" / "6"
    last.mkdir(parents=True)
    meta = {"metas": {"data_stages": [{"name": "cap", "start_training_step": 1, "consumed_train_samples": 24}]}}
    (last / "checkpoint_metadata.json").write_text(json.dumps(meta))
    check_own_resume(None, _config(), "cap.yaml")
    check_own_resume(last, _config(), "cap.yaml")  # 6 steps x 4 = 24: the same global batch
    check_own_resume(last, _config(train_steps=6), "cap.yaml")  # trained to the end: only the export is left
    with pytest.raises(
        RecipeError,
        match=r"trained 6 steps on 24 sequences \(4 a step\), this launch's global "
        r"batch is 8 .*--restart",
    ):
        check_own_resume(last, _config(micro=4), "cap.yaml")
    with pytest.raises(RecipeError, match="is step 6, past this budget's last step 5"):
        check_own_resume(last, _config(train_steps=5), "cap.yaml")


def test_a_truncated_index_is_named_in_one_line(stream):
    data = stream.index_path.read_bytes()
    stream.index_path.write_bytes(data[: len(data) // 2])
    fresh = PackedStream(stream.index_path, {n: stream.files[i][0].parent for i, n in enumerate(stream.names)}, SEQ)
    with pytest.raises(RecipeError, match="index.npy: cannot be read as a sampling index .*run the data step again"):
        fresh[0]
    with pytest.raises(RecipeError, match="cannot be read as a sampling index"):
        StageBatches(fresh, Shape(2, 1, 1), 0, folders={}, consumed_samples=4)


def test_a_resume_takes_the_counts_nanotron_recorded_and_counts_again_only_when_they_do_not_add_up(
    stream, monkeypatch
):
    index = np.load(stream.index_path)
    folders = _folders(stream)
    exact = {folders[n]: int(c) * SEQ for n, c in zip(stream.names, np.bincount(index[:20, 0], minlength=3))}
    calls = []
    counted = PackedStream.source_counts

    def spy(self, start, end):
        calls.append((start, end))
        return counted(self, start, end)

    monkeypatch.setattr(PackedStream, "source_counts", spy)
    recorded = StageBatches(stream, Shape(2, 1, 2), 0, folders=folders, consumed_samples=20, consumed_tokens=exact)
    assert calls == [] and recorded.get_consumption_stats() == {f: {"tokens": t} for f, t in exact.items() if t}
    # a record that does not account for every consumed window (another folder name, a lost entry): counted
    stale = {"/elsewhere/en": 20 * SEQ}
    counted_again = StageBatches(
        stream, Shape(2, 1, 2), 0, folders=folders, consumed_samples=20, consumed_tokens=stale
    )
    assert calls == [(0, 20)] and counted_again.get_consumption_stats() == recorded.get_consumption_stats()
