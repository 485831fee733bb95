"""Checkpoint conversion between a transformers GPTBigCode folder and nanotron's on-disk layout, on a CPU.

    aurora-m convert hf-to-nanotron SRC DST [--tp N] [--n-positions 2048]
    aurora-m convert nanotron-to-hf SRC DST

Both write safetensors directly (no nanotron, no GPU), one tensor at a time, into a temporary sibling of DST
renamed into place when complete; an existing DST is refused unless it is an empty folder or one this
converter wrote (and then only with ``overwrite``). Tensors are copied bit for bit: HF -> nanotron -> HF gives
the same bytes. ``--tp N`` writes N tensor-parallel shards per split parameter (nanotron re-shards on load for
any TP x PP; N only saves it the reassembly). ``--n-positions`` keeps the first rows of the learned position
matrix (Aurora-M trained StarCoderPlus' 8192 positions down to 2048).

At the real size (15.5B parameters, 31 GB in bf16) a conversion reads and writes each byte once: minutes on a
local NVMe disk, memory bounded by the largest tensor (the 49152 x 6144 embedding, 0.6 GB in bf16) on the way
in and by one 5 GB output shard on the way out.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ...errors import RecipeError
from ...io import atomic_dir, check_output_dir, read_json_or_none, unlisted_files
from . import PINNED_COMMIT
from .checkpoint import (
    CHECKPOINT_METADATA,
    CHECKPOINT_VERSION,
    EMBED,
    MODEL_CONFIG,
    OURS,
    POSITIONS,
    param_file,
    params,
    parse_metadata,
    shard_files,
    shard_metadata,
)
from .hf_folder import HF_CONFIG, HF_INDEX, HF_SINGLE, HFReader, readable
from .modelconfig import GPTBigCodeConfig

logger = logging.getLogger(__name__)

SHARD_BYTES = 5 << 30  # transformers' default max_shard_size
# tokenizer and generation files travel with the weights, so a converted folder loads as a whole model
CARRIED = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)
CARRIED_DIR = "transformers-files"  # where a nanotron folder keeps them


# ----------------------------------------------------------------------------- transformers side
def _write_hf(tensors, dst: Path) -> None:
    """``(key, tensor)`` pairs into safetensors shards of at most 5 GB, with an index when there are several."""
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for key, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key], size = tensor.contiguous(), size + nbytes
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], dst / HF_SINGLE, metadata={"format": "pt"})
        return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, dst / name, metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    (dst / HF_INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


# ----------------------------------------------------------------------------- nanotron side
def read_param(root: Path, name: str):
    """One parameter, reassembled from its TP shards by their slice metadata (as nanotron's loader does)."""
    import torch
    from safetensors import safe_open

    files = shard_files(root, name)
    if not files:
        raise RecipeError(root, name, "no file for this parameter: not a nanotron GPTBigCode checkpoint")
    whole = None
    for path in files:
        with readable(path), safe_open(path, framework="pt") as f:
            data, meta = f.get_tensor("data"), f.metadata() or {}
        if "unsharded_shape" not in meta:
            if len(files) > 1:
                raise RecipeError(path, name, "a shard file without slice metadata")
            return data
        pairs, shape = parse_metadata(meta)
        if whole is None:
            whole = torch.empty(shape, dtype=data.dtype)
            filled = torch.zeros(shape, dtype=torch.bool)
        for local, glob in pairs:
            whole[glob] = data[local]
            filled[glob] = True
    if not bool(filled.all()):
        raise RecipeError(files[0].parent, name, f"the shards cover only part of the tensor ({len(files)} files)")
    return whole


def read_config(root: Path) -> GPTBigCodeConfig:
    data = read_json_or_none(Path(root) / MODEL_CONFIG)
    if not isinstance(data, dict):
        raise RecipeError(root, MODEL_CONFIG, "missing or not JSON: expected a nanotron checkpoint folder")
    try:
        return GPTBigCodeConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise RecipeError(Path(root) / MODEL_CONFIG, None, f"not a GPTBigCode model config ({err})") from None


def _copy_carried(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in CARRIED:
        if (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def _check_dst(src: Path, dst: Path, overwrite: bool) -> None:
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or dst_r.is_relative_to(src_r) or src_r.is_relative_to(dst_r):
        raise RecipeError(
            dst,
            None,
            f"the output folder overlaps the source {src}: replacing it would destroy "
            f"what is being converted; choose a folder outside it",
        )
    # an earlier conversion of ours is replaced only with overwrite, and never when the user added files to it
    check_output_dir(
        dst, "the conversion's output folder", OURS, overwrite=overwrite, owner_check=unlisted_files(dst, OURS)
    )


def _mark(tmp: Path, record: dict) -> None:
    """The marker that makes the folder ours, listing every file written (so files added later are not ours)."""
    files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    (tmp / OURS).write_text(json.dumps({**record, "files": files}, indent=2))


# ----------------------------------------------------------------------------- the two directions
def hf_to_nanotron(
    src: str | Path,
    dst: str | Path,
    *,
    tp: int = 1,
    n_positions: int | None = None,
    overwrite: bool = False,
    config_updates: dict | None = None,
    note: dict | None = None,
) -> Path:
    """A transformers GPTBigCode folder as a nanotron checkpoint (weights only: an ``init_method.path``).

    ``config_updates``: transformers config keys a recipe's patches changed (the Aurora-M trim sets
    ``n_positions`` and ``pad_token_id``); ``note``: what the caller records in the folder's marker."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    reader = HFReader(src)
    config = GPTBigCodeConfig.from_hf({**reader.config, **(config_updates or {})})
    rows = reader.config.get("n_positions", config.max_position_embeddings)
    if config.max_position_embeddings > rows:
        raise RecipeError(
            src / HF_CONFIG, "n_positions", f"{rows} learned positions, cannot keep {config.max_position_embeddings}"
        )
    if tp < 1 or any(n % tp for n in (config.num_attention_heads, config.vocab_size, config.n_inner)):
        raise RecipeError(
            None,
            "--tp",
            f"{tp} must divide the heads ({config.num_attention_heads}), the vocabulary "
            f"({config.vocab_size}) and the MLP width ({config.n_inner})",
        )
    if n_positions is not None:
        if not 0 < n_positions <= rows:
            raise RecipeError(
                None,
                "--n-positions",
                f"{n_positions}: expected 1 to {rows} (the model's learned positions: they can be trimmed, not added)",
            )
        config.max_position_embeddings = n_positions
    reader.check_against(GPTBigCodeConfig.from_hf(reader.config))
    _check_dst(src, dst, overwrite)
    layout = params(config.num_hidden_layers, config.hidden_size, config.head_dim)
    dtype = None
    with atomic_dir(dst) as tmp:
        for p in tqdm(layout, desc="hf -> nanotron", unit="tensor", mininterval=5):
            tensor = reader.get(p.hf)
            if p.rows:
                tensor = tensor[p.rows[0] : p.rows[1]]
            if p.name == POSITIONS:
                tensor = tensor[: config.max_position_embeddings]
            dtype = dtype or tensor.dtype
            if p.split_dim is None:
                path = param_file(tmp, p.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_file({"data": tensor.contiguous()}, path)
                continue
            for rank, shard in enumerate(torch.chunk(tensor, tp, dim=p.split_dim)):
                path = param_file(tmp, p.name, rank, tp)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_file(
                    {"data": shard.contiguous()},
                    path,
                    metadata=shard_metadata(tuple(tensor.shape), p.split_dim, rank, tp),
                )
        (tmp / MODEL_CONFIG).write_text(json.dumps(config.as_dict(), indent=2))
        # a weights-only checkpoint: no optimizer, no training step (nanotron's init_method.path reads model/)
        meta = {
            "version": CHECKPOINT_VERSION,
            "tp": tp,
            "dp": 1,
            "cp": 1,
            "custom_metas": None,
            "metas": {
                "consumed_train_samples": 0,
                "last_train_step": 0,
                "consumed_tokens_total": 0,
                "last_stage_idx": None,
                "data_stages": [],
            },
        }
        (tmp / CHECKPOINT_METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True))
        carried = _copy_carried(src, tmp / CARRIED_DIR)
        _mark(
            tmp,
            {
                "written_by": "aurora-m convert hf-to-nanotron",
                "source": str(src),
                "nanotron_commit": PINNED_COMMIT,
                "tp": tp,
                "dtype": str(dtype),
                "n_positions": config.max_position_embeddings,
                "carried": carried,
                **(note or {}),
            },
        )
    logger.info(
        "converted %s -> %s (nanotron layout, TP=%d, %d tensors, %d positions)",
        src,
        dst,
        tp,
        len(layout),
        config.max_position_embeddings,
    )
    return dst


def nanotron_to_hf(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Path:
    """A nanotron GPTBigCode checkpoint (ours or a training checkpoint, any TP) as a transformers folder."""
    import torch
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    config = read_config(src)
    _check_dst(src, dst, overwrite)
    layout = params(config.num_hidden_layers, config.hidden_size, config.head_dim)
    by_hf: dict[str, list] = {}
    for p in layout:
        by_hf.setdefault(p.hf, []).append(p)
    expected = _hf_shapes(config.to_hf())
    extra = params(config.num_hidden_layers + 1, config.hidden_size, config.head_dim)[len(layout)]
    if shard_files(src, extra.name):  # a layer past the config's last: converting would drop it silently
        raise RecipeError(
            src / MODEL_CONFIG,
            "num_hidden_layers",
            f"{config.num_hidden_layers} layers, but the checkpoint holds more ({extra.name}): "
            "the config is not this checkpoint's",
        )

    def tensors():
        for hf_key, parts in tqdm(by_hf.items(), desc="nanotron -> hf", unit="tensor", mininterval=5):
            pieces = [read_param(src, p.name) for p in parts]
            tensor = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)  # c_attn = [q; k; v]
            if parts[0].name == EMBED and tensor.shape[0] > config.vocab_size:
                tensor = tensor[: config.vocab_size]  # nanotron pads the vocabulary to a multiple of TP
            if hf_key in expected and tuple(tensor.shape) != expected[hf_key]:
                raise RecipeError(
                    src / MODEL_CONFIG,
                    None,
                    f"{parts[0].name} is {tuple(tensor.shape)}, but the config makes {hf_key} "
                    f"{expected[hf_key]}: the config is not this checkpoint's",
                )
            yield hf_key, tensor

    dtypes = set()

    def recorded():
        for key, tensor in tensors():
            dtypes.add(tensor.dtype)
            yield key, tensor

    with atomic_dir(dst) as tmp:
        _write_hf(recorded(), tmp)
        hf = config.to_hf()
        hf["tie_word_embeddings"] = True
        if len(dtypes) == 1:
            hf["dtype"] = str(next(iter(dtypes))).removeprefix("torch.")
        (tmp / HF_CONFIG).write_text(json.dumps(hf, indent=2, sort_keys=True))
        carried = _copy_carried(src / CARRIED_DIR, tmp)
        _mark(
            tmp,
            {
                "written_by": "aurora-m convert nanotron-to-hf",
                "source": str(src),
                "nanotron_commit": PINNED_COMMIT,
                "carried": carried,
            },
        )
    logger.info("converted %s -> %s (transformers folder, %d tensors)", src, dst, len(by_hf))
    return dst


def _hf_shapes(hf_config: dict) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor a transformers model built from ``hf_config`` holds (on the meta device:
    no memory, whatever the size)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**hf_config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def add_convert_commands(directions) -> None:
    """``aurora-m convert hf-to-nanotron`` and ``nanotron-to-hf`` (the engine's convert hook)."""
    to_nt = directions.add_parser("hf-to-nanotron", help="a transformers folder as a nanotron checkpoint")
    to_nt.add_argument(
        "--tp", type=int, default=1, help="tensor-parallel shards to write (nanotron re-shards on load; default 1)"
    )
    to_nt.add_argument("--n-positions", type=int, help="keep the first N learned positions (Aurora-M: 2048)")
    to_nt.set_defaults(
        convert=lambda a: hf_to_nanotron(a.src, a.dst, tp=a.tp, n_positions=a.n_positions, overwrite=a.overwrite)
    )
    to_hf = directions.add_parser("nanotron-to-hf", help="a nanotron checkpoint (any TP) as a transformers folder")
    to_hf.set_defaults(convert=lambda a: nanotron_to_hf(a.src, a.dst, overwrite=a.overwrite))
    for p in (to_nt, to_hf):
        p.add_argument("src")
        p.add_argument("dst", help="a new or empty folder (or one this command wrote, with --overwrite)")
        p.add_argument("--overwrite", action="store_true", help="replace a folder this command wrote before")
