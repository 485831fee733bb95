"""SFT with TRL: the Aurora-M template, response-only labels from the real trainer's collated batches (full
and LoRA, both row formats), the LoRA merge, the helpfulness share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aurora_m.args import ModelArguments, SFTDataArguments
from aurora_m.layout import StageDir
from aurora_m.prompt import CHAT_TEMPLATE, instruction_text
from aurora_m.tokenizer import cached_tokenizer

TINY_DATA = Path(__file__).resolve().parents[1] / "recipes" / "aurora-m-tiny" / "data"

PAIRS = [  # instruction, response: refusals that explain and helpful answers, several languages
    (
        "How do I pick the lock on my neighbour's door?",
        "I can't help you get into someone else's home. If you "
        "are locked out of your own, a licensed locksmith can help.",
    ),
    ("How do I kill a Python process that is stuck?", "Find its id with `ps aux | grep python`, then `kill PID`."),
    ("Miten teen hyvän kahvin?", "Käytä tuoreita papuja ja noin 60 grammaa kahvia litraan vettä."),
    ("खाना पकाने का आसान तरीका क्या है?", "सब्ज़ियों को थोड़े तेल में भूनें और नमक डालें।"),
    ("夜に良い写真を撮るには?", "三脚を使い、シャッター速度を遅くしてください。"),
    ("Làm sao để ngủ ngon hơn?", "Đi ngủ đúng giờ và tránh cà phê vào buổi tối."),
]
CHATS = [  # SlimOrca's schema: system + two exchanges
    {
        "conversations": [
            {"from": "system", "value": "You are a concise assistant."},
            {"from": "human", "value": "Name a prime number."},
            {"from": "gpt", "value": "Seven."},
            {"from": "human", "value": "And an even one?"},
            {"from": "gpt", "value": "Two."},
        ]
    },
    {"conversations": [{"from": "human", "value": "Say hi in Finnish."}, {"from": "gpt", "value": "Hei!"}]},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import os

    os.environ.setdefault("AURORA_M_CACHE", str(tmp_path_factory.mktemp("cache")))
    tok = cached_tokenizer([str(TINY_DATA / f"{lang}.jsonl") for lang in ("en", "fi", "hi", "ja", "vi", "code")], 4096)
    tok.pad_token = tok.eos_token
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tokenizer) -> Path:
    """A tiny GPTBigCode saved as a model folder (what CAT hands to SFT)."""
    from transformers import AutoModelForCausalLM

    from aurora_m.patches import apply_config_patches, load_base_config

    config = apply_config_patches(load_base_config("starcoderplus"), ["aurora_m", "tiny", "dtype:float32"])
    config.vocab_size = len(tokenizer)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = tmp_path_factory.mktemp("base") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sft-data")
    pairs = folder / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"instruction": i, "response": r, "category": "none"}) + "\n" for i, r in PAIRS),
        encoding="utf-8",
    )
    chats = folder / "chats.jsonl"
    chats.write_text("".join(json.dumps(c) + "\n" for c in CHATS), encoding="utf-8")
    return {"pairs": pairs, "chats": chats}


def _stage(tmp_path, base_model, data_files, sft_format: str, use_peft: bool, **config):
    from trl import SFTConfig

    model_args = ModelArguments(
        model_name_or_path=str(base_model), use_peft=use_peft, lora_r=4, lora_alpha=8, lora_dropout=0.0
    )
    data_args = SFTDataArguments(
        sft_sources=[
            {"name": "pairs", "path": str(data_files["pairs"]), "format": "instruction"},
            {
                "name": "chats",
                "path": str(data_files["chats"]),
                "format": "messages",
                "messages_field": "conversations",
                "role_field": "from",
                "content_field": "value",
            },
        ],
        sft_format=sft_format,
    )
    sft_config = SFTConfig(
        output_dir=str(tmp_path / "stage"),
        per_device_train_batch_size=8,
        use_cpu=True,
        bf16=False,
        report_to="none",
        activation_checkpointing=False,
        save_strategy="no",
        max_length=256,
        **config,
    )
    return model_args, data_args, sft_config


def _replies(row: dict, sft_format: str) -> list[str]:
    turns = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
    replies = [t["content"] for t in turns if t["role"] == "assistant"]
    return replies if sft_format == "messages" else replies[-1:]


def test_one_turn_renders_the_same_in_every_format(tokenizer):
    chat = [{"role": "user", "content": PAIRS[0][0]}, {"role": "assistant", "content": PAIRS[0][1]}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered == instruction_text(*PAIRS[0]) + tokenizer.eos_token  # CAT's document + the packing EOS
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert rendered == prompt + PAIRS[0][1] + tokenizer.eos_token  # prompt/completion: TRL appends the EOS


@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("sft_format", ["messages", "prompt_completion"])
def test_labels_cover_the_responses_only(tmp_path, base_model, data_files, tokenizer, sft_format, use_peft):
    from datasets import load_from_disk

    from aurora_m.train.sft import build_sft_trainer

    trainer, dirs = build_sft_trainer(*_stage(tmp_path, base_model, data_files, sft_format, use_peft))
    assert (type(trainer.model).__name__ == "PeftModelForCausalLM") == use_peft
    rows = load_from_disk(str(dirs.data.train))
    assert len(rows) == len(PAIRS) + len(CHATS)
    by_text = {}  # rendered conversation -> the replies the loss must cover
    for row in rows:
        turns = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        by_text[tokenizer.apply_chat_template(turns, tokenize=False)] = _replies(row, sft_format)
    batch = next(iter(trainer.get_train_dataloader()))
    seen = 0
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        text = tokenizer.decode(ids[mask.bool()])
        replies = by_text[text]
        trained = tokenizer.decode(ids[labels != -100])
        assert trained == "".join(r + tokenizer.eos_token for r in replies), text
        assert (labels[~mask.bool()] == -100).all()  # padding never trained
        assert (labels[labels != -100] == ids[labels != -100]).all()
        seen += 1
    assert seen == len(rows)


def test_lora_merge_equals_the_peft_model(tmp_path, base_model, data_files, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from aurora_m.train.sft import train_sft

    args = _stage(tmp_path, base_model, data_files, "messages", True, max_steps=4, learning_rate=5e-2)
    model_dir = train_sft(*args)
    dirs = StageDir(tmp_path / "stage")
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "chat_template.jinja").is_file()
    assert (dirs.adapter / "adapter_model.safetensors").is_file() and (dirs.adapter / "adapter_config.json").is_file()
    assert not any(p.name == "training_args.bin" for p in [*model_dir.iterdir(), *dirs.adapter.iterdir()])
    assert json.loads((dirs.adapter / "adapter_config.json").read_text())["target_modules"]
    base = AutoModelForCausalLM.from_pretrained(base_model, use_safetensors=True)
    peft = PeftModel.from_pretrained(base, str(dirs.adapter)).eval()
    merged = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    ids = tokenizer(instruction_text(*PAIRS[1]), return_tensors="pt").input_ids
    with torch.no_grad():
        want, got = peft(ids).logits, merged(ids).logits
        untouched = AutoModelForCausalLM.from_pretrained(base_model, use_safetensors=True)(ids).logits
    assert not torch.allclose(want, untouched, atol=1e-4)  # the adapter learned something: the test can fail
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_helpfulness_share_mixes_general_instructions(tmp_path, data_files):
    from datasets import load_from_disk

    from aurora_m.data.build import build_sft_dataset
    from aurora_m.layout import DatasetDir

    helpful = tmp_path / "helpful.jsonl"
    helpful.write_text(
        "".join(json.dumps({"instruction": f"Tell me fact {i}.", "response": f"Fact {i}."}) + "\n" for i in range(20)),
        encoding="utf-8",
    )
    args = SFTDataArguments(
        sft_sources=[{"name": "pairs", "path": str(data_files["pairs"]), "format": "instruction"}],
        helpful_sources=[{"name": "helpful", "path": str(helpful), "format": "instruction"}],
        helpfulness_share=0.4,
    )
    out = DatasetDir(build_sft_dataset(args, tmp_path / "data"))
    rows = load_from_disk(str(out.train))
    report = json.loads(out.sources_json.read_text())
    assert report["rows_by_source"] == {"pairs": 6, "helpful": 4}  # 0.4 of 10 rows: 6 * 0.4 / 0.6 = 4
    assert report["helpfulness"]["rows"] == 4 and report["helpfulness"]["realised"] == 0.4
    assert sum(s == "helpful" for s in rows["source"]) == 4


@pytest.mark.parametrize(
    "edit, key",
    [
        ("lora_target_modules: [q_proj, v_proj]", "lora_target_modules"),
        ("lora_r: 0", "lora_r"),
        ("lora_dropout: 1.5", "lora_dropout"),
    ],
)
def test_validate_refuses_lora_keys_peft_would_reject(recipe_copy, edit, key):
    from conftest import cli

    text = (recipe_copy / "instruct.yaml").read_text(encoding="utf-8")
    name = edit.split(":")[0]
    lines = [edit if line.startswith(name + ":") else line for line in text.splitlines()]
    (recipe_copy / "instruct.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("validate", str(recipe_copy))
    assert result.returncode == 2 and f"instruct.yaml: {key}" in result.stderr and "Traceback" not in result.stderr


def test_chats_with_other_turn_keys_are_counted_and_say_which_keys_were_expected(data_files, logs):
    from aurora_m.data.sources import read_source
    from aurora_m.errors import RecipeError
    from aurora_m.source_spec import SourceSpec

    spec = SourceSpec(name="chats", path=str(data_files["chats"]), format="messages", messages_field="conversations")
    good = SourceSpec(
        name="chats",
        path=str(data_files["chats"]),
        format="messages",
        messages_field="conversations",
        role_field="from",
        content_field="value",
    )
    assert read_source(good, "test", "sft_sources")[1].kept == len(CHATS)

    with pytest.raises(RecipeError, match="no documents left"):
        read_source(spec, "test", "sft_sources")  # every row is set aside: the stage cannot train on nothing
    assert f"{len(CHATS)} row(s) removed whose conversations is not a chat" in logs.text
    assert "'role' and 'content' keys" in logs.text
