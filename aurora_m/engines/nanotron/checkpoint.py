"""nanotron's on-disk checkpoint format for our GPTBigCode model, and where each transformers tensor goes.

A nanotron checkpoint folder (``serialize/weights.py`` at the pinned commit) holds one safetensors file per
parameter, the tensor named ``data``, under ``model/<the parameter's dotted path as folders>/``::

    model/model/decoder/0/pp_block/attn/qkv/q/model_weight_pp-rank-0-of-1_tp-rank-1-of-2.safetensors
    model/model/decoder/0/pp_block/attn/qkv/kv/model_weight.safetensors        (the same on every TP rank)

A TP-sharded file carries metadata: the checkpoint version, which slice of the unsharded tensor it is
(``local_global_slices_pairs``) and the unsharded shape; nanotron reassembles and re-shards from that
metadata when the topology changes, so a folder written at TP=N loads at any TP and PP. Beside ``model/``:
``checkpoint_metadata.json`` (version, tp, dp, training metadata) and ``model_config.json``.

The GPTBigCode mapping (multi-query attention): ``c_attn`` is ``[q; k; v]`` of shape ``(n_embd + 2 * head_dim,
n_embd)``: its first ``n_embd`` rows are nanotron's ``attn.qkv.q`` (split by heads across TP), the rest
``attn.qkv.kv`` (``[k; v]``, one head replicated on every TP rank). The head is tied to the token embedding,
so only the embedding is stored; the learned positions are our ``position_embedding`` (replicated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_VERSION = "1.5"  # nanotron.constants.CHECKPOINT_VERSION at the pinned commit
CHECKPOINT_METADATA = "checkpoint_metadata.json"  # nanotron.constants.CHECKPOINT_FILE_NAME
MODEL_CONFIG = "model_config.json"  # nanotron.constants.MODEL_CONFIG_FILE_NAME
LATEST = "latest.txt"  # the step of the newest checkpoint, in a checkpoints folder
WEIGHTS = "model"  # the folder of parameter files inside a checkpoint
# Written by our converter into a folder it made: what makes the folder ours, and the transformers config and
# dtype to write back (a nanotron training checkpoint lacks it: model_config.json is read instead).
OURS = "aurora-m-nanotron.json"

EMBED = "model.token_embeddings.pp_block.token_embedding.weight"
POSITIONS = "model.token_embeddings.pp_block.position_embedding.weight"
FINAL_LN = "model.final_layer_norm.pp_block"
LM_HEAD = "model.lm_head.pp_block.weight"  # tied to EMBED: never stored


@dataclass(frozen=True)
class Param:
    """One nanotron parameter: its dotted name, the transformers tensor it comes from, and how TP splits it."""

    name: str
    hf: str  # transformers key
    split_dim: int | None  # None: replicated on every TP rank (one file, no rank suffix)
    rows: tuple[int, int] | None = None  # a row range of the transformers tensor (q / kv out of c_attn)


def block(i: int) -> str:
    return f"model.decoder.{i}.pp_block"


def params(n_layer: int, n_embd: int, head_dim: int) -> list[Param]:
    """Every stored nanotron parameter of a GPTBigCode model, in forward order."""
    out = [Param(EMBED, "transformer.wte.weight", 0), Param(POSITIONS, "transformer.wpe.weight", None)]
    for i in range(n_layer):
        b, h = block(i), f"transformer.h.{i}"
        q, kv = (0, n_embd), (n_embd, n_embd + 2 * head_dim)
        out += [
            Param(f"{b}.ln_1.weight", f"{h}.ln_1.weight", None),
            Param(f"{b}.ln_1.bias", f"{h}.ln_1.bias", None),
            Param(f"{b}.attn.qkv.q.weight", f"{h}.attn.c_attn.weight", 0, q),
            Param(f"{b}.attn.qkv.q.bias", f"{h}.attn.c_attn.bias", 0, q),
            Param(f"{b}.attn.qkv.kv.weight", f"{h}.attn.c_attn.weight", None, kv),
            Param(f"{b}.attn.qkv.kv.bias", f"{h}.attn.c_attn.bias", None, kv),
            Param(f"{b}.attn.o.weight", f"{h}.attn.c_proj.weight", 1),  # row-parallel: split along its input
            Param(f"{b}.attn.o.bias", f"{h}.attn.c_proj.bias", None),
            Param(f"{b}.ln_2.weight", f"{h}.ln_2.weight", None),
            Param(f"{b}.ln_2.bias", f"{h}.ln_2.bias", None),
            Param(f"{b}.ff.c_fc.weight", f"{h}.mlp.c_fc.weight", 0),
            Param(f"{b}.ff.c_fc.bias", f"{h}.mlp.c_fc.bias", 0),
            Param(f"{b}.ff.c_proj.weight", f"{h}.mlp.c_proj.weight", 1),
            Param(f"{b}.ff.c_proj.bias", f"{h}.mlp.c_proj.bias", None),
        ]
    out += [
        Param(f"{FINAL_LN}.weight", "transformer.ln_f.weight", None),
        Param(f"{FINAL_LN}.bias", "transformer.ln_f.bias", None),
    ]
    return out


def param_file(root: Path, name: str, tp_rank: int | None = None, tp: int = 1, pp_rank: int = 0, pp: int = 1) -> Path:
    """``serialize.utils.get_path``: a sharded parameter's file names its pipeline and tensor rank."""
    *folders, leaf = name.split(".")
    if tp_rank is None:
        return Path(root, WEIGHTS, *folders, f"model_{leaf}.safetensors")
    ranks = f"pp-rank-{pp_rank}-of-{pp}_tp-rank-{tp_rank}-of-{tp}"
    return Path(root, WEIGHTS, *folders, f"model_{leaf}_{ranks}.safetensors")


def shard_files(root: Path, name: str) -> list[Path]:
    """Every stored file of one parameter (one when replicated, one per TP rank (and PP stage) when sharded)."""
    *folders, leaf = name.split(".")
    folder = Path(root, WEIGHTS, *folders)
    whole = folder / f"model_{leaf}.safetensors"
    if whole.is_file():
        return [whole]
    found = folder.glob(f"model_{leaf}_pp-rank-*_tp-rank-*.safetensors")
    return sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p.name[len(leaf) :])])


# ----------------------------------------------------------------------------- slice metadata
def _slice_str(s: slice) -> str:
    return ",".join("None" if x is None else str(x) for x in (s.start, s.stop, s.step))


def _str_slice(text: str) -> slice:
    return slice(*(None if x == "None" else int(x) for x in text.split(",")))


def shard_metadata(shape: tuple[int, ...], split_dim: int, rank: int, tp: int) -> dict[str, str]:
    """The metadata nanotron writes into a TP shard file (``TensorMetadata.to_str_dict``)."""
    size = shape[split_dim] // tp
    local = "|".join(_slice_str(slice(None)) for _ in shape)
    glob = "|".join(
        _slice_str(slice(rank * size, (rank + 1) * size) if d == split_dim else slice(None)) for d in range(len(shape))
    )
    return {
        "version": CHECKPOINT_VERSION,
        "local_global_slices_pairs": f"{local}#{glob}",
        "unsharded_shape": str(tuple(shape)),
    }


def parse_metadata(meta: dict[str, str]) -> tuple[list[tuple[tuple[slice, ...], tuple[slice, ...]]], tuple[int, ...]]:
    """(local slices, global slices) pairs and the unsharded shape, from a shard file's metadata."""
    pairs = []
    for pair in meta["local_global_slices_pairs"].split(";"):
        local, glob = pair.split("#")
        pairs.append((tuple(map(_str_slice, local.split("|"))), tuple(map(_str_slice, glob.split("|")))))
    shape = tuple(int(x) for x in meta["unsharded_shape"].strip("()").split(",") if x.strip())
    return pairs, shape
