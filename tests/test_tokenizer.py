"""The tiny twin's locally trained byte-level BPE tokenizer."""

from __future__ import annotations

import json

from aurora_m.tokenizer import STARCODER_SPECIAL_TOKENS, cached_tokenizer

from conftest import TINY

SAMPLES = {
    "en": "The river is calm today.",
    "fi": "Järvellä on hiljaista.",
    "hi": "आज मौसम अच्छा है।",
    "ja": "今日は天気がいいですね。",
    "vi": "Hôm nay trời đẹp quá.",
    "code": "def f(x):\n    return x + 1\n",
}


def test_trained_tokenizer_has_starcoder_specials_and_round_trips(cache_dir):
    files = sorted(str(p) for p in TINY.glob("data/*.jsonl"))
    tok = cached_tokenizer(files, 4096)
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == 0
    assert [tok.convert_tokens_to_ids(t) for t in STARCODER_SPECIAL_TOKENS] == list(
        range(len(STARCODER_SPECIAL_TOKENS))
    )
    assert len(tok) <= 4096
    for lang, text in SAMPLES.items():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, lang
    # trained once: the second call loads the cached files
    cached = next((cache_dir / "tokenizers").iterdir())
    stamp = (cached / "tokenizer.json").stat().st_mtime_ns
    again = cached_tokenizer(files, 4096)
    assert (cached / "tokenizer.json").stat().st_mtime_ns == stamp
    assert again.get_vocab() == tok.get_vocab()
    assert json.loads((cached / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
