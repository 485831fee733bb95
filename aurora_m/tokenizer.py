"""Tokenizers: the model's own, or (for the tiny twin) a byte-level BPE trained here on the sample corpus.

No StarCoder tokenizer can be downloaded offline, so the tiny twin trains a small one with
StarCoder's special tokens (``<|endoftext|>`` is id 0 = bos = eos = pad, FIM tokens next), caches
it by the hash of its inputs, and stores it with every model it trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .args import ModelArguments
from .errors import RecipeError
from .hub_errors import explain_hub_errors
from .io import atomic_dir, check_writable

EOS = "<|endoftext|>"
logger = logging.getLogger(__name__)
STARCODER_SPECIAL_TOKENS = [
    EOS,
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
]
TEXT_FIELDS = ("text", "instruction", "response")
FORMAT_VERSION = "1"


def cache_root() -> Path:
    return Path(os.environ.get("AURORA_M_CACHE", Path.home() / ".cache" / "aurora-m"))


def check_caches() -> None:
    """The caches a run writes (ours, and Hugging Face's: datasets' Arrow tables, the Hub's files) can be written,
    else one line naming the path and the variable that moves it (an unwritable or missing HOME gives one)."""
    from huggingface_hub import constants

    for path, what in (
        (cache_root(), "the tokenizer cache (AURORA_M_CACHE, default ~/.cache/aurora-m)"),
        (Path(constants.HF_HOME), "the Hugging Face cache (HF_HOME, default ~/.cache/huggingface)"),
    ):
        check_writable(path, f"{what}: set the variable to a folder you can write")


def _iter_texts(files: list[str]):
    for name in files:
        with open(name, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                    row = json.loads(line) if line.strip() else {}
                except UnicodeDecodeError as err:
                    raise RecipeError(
                        name,
                        f"line {number}",
                        f"not UTF-8 (byte {raw[err.start]:#04x} at column "
                        f"{err.start + 1}); "
                        "the tokenizer trains on this file",
                    ) from None
                except ValueError as err:
                    raise RecipeError(
                        name, f"line {number}", f"not valid JSON ({err}); the tokenizer trains on this file"
                    ) from None
                if not isinstance(row, dict):
                    continue
                for key in TEXT_FIELDS:
                    if isinstance(row.get(key), str):
                        yield row[key]


def train_tokenizer(files: list[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE on the text fields of jsonl ``files`` and save it under ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=STARCODER_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_iter_texts(files), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        additional_special_tokens=STARCODER_SPECIAL_TOKENS[1:],
        model_max_length=2048,
    )
    fast.save_pretrained(out_dir)
    return fast


def cached_tokenizer(files: list[str], vocab_size: int):
    """The tokenizer trained on ``files``, trained once and then loaded from the cache."""
    from transformers import AutoTokenizer

    digest = hashlib.sha256(f"{FORMAT_VERSION}:{vocab_size}".encode())
    for name in sorted(files):
        digest.update(Path(name).read_bytes())
    target = cache_root() / "tokenizers" / digest.hexdigest()[:16]
    check_writable(target.parent, "the tokenizer cache (AURORA_M_CACHE, default ~/.cache/aurora-m)")
    if (target / "tokenizer.json").is_file():
        try:
            return AutoTokenizer.from_pretrained(target)
        except Exception as err:  # noqa: BLE001 - a cache entry cut short or overwritten: ours to make again
            logger.warning("%s: the cached tokenizer does not load (%s): training it again", target, err)
    with atomic_dir(target) as tmp:  # another process finishing first wrote the same tokenizer
        train_tokenizer(files, vocab_size, tmp)
    return AutoTokenizer.from_pretrained(target)


def load_tokenizer(model_args: ModelArguments, config_file: str | Path = "<stage config>"):
    """The stage's tokenizer: named, trained from files, or the one saved with the model.

    A Hub failure (StarCoderPlus is gated) becomes one line with the fix, naming the key that asked.
    """
    from transformers import AutoTokenizer

    if model_args.tokenizer_name_or_path:
        with explain_hub_errors(config_file, "tokenizer_name_or_path", model_args.tokenizer_name_or_path, "model"):
            tok = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
    elif model_args.tokenizer_train_files:
        tok = cached_tokenizer(model_args.tokenizer_train_files, model_args.tokenizer_vocab_size)
    elif model_args.model_name_or_path:
        with explain_hub_errors(config_file, "model_name_or_path", model_args.model_name_or_path, "model"):
            tok = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    else:
        raise RecipeError(
            config_file,
            "tokenizer_name_or_path",
            "no tokenizer: set tokenizer_name_or_path, tokenizer_train_files or model_name_or_path",
        )
    if tok.eos_token is None:
        raise RecipeError(
            config_file,
            "tokenizer_name_or_path",
            "the tokenizer has no eos token; documents could not be separated when packing",
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # StarCoder pads with <|endoftext|>
    if not tok.chat_template:  # StarCoderPlus has none: every stage's model folder carries the Aurora-M format
        from .prompt import CHAT_TEMPLATE

        tok.chat_template = CHAT_TEMPLATE
    return tok
