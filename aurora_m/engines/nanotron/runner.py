"""The train step of an ``engine: nanotron`` pretrain stage: convert, emit, launch, convert back.

1. **start**: CAP's input model (a Hub id, a local folder, or the tiny twin's model built from its config and
   ``model_seed``) converted to nanotron's layout in ``<stage>/nanotron-init`` with the recipe's patches (the
   Aurora-M ``n_positions`` trim); a stage after a nanotron stage starts from that stage's last checkpoint.
2. **config**: the stage YAML as nanotron's YAML in ``<stage>/nanotron.yaml`` (:mod:`.config`).
3. **train**: ``torchrun`` of :mod:`.entry` on this node's GPUs, or through ``srun`` one torchrun per node of
   the Slurm job (:func:`.launch.launch_command`); a relaunch after preemption resumes from the stage's own
   ``<stage>/nanotron/latest.txt``.
4. **export**: the last checkpoint converted back into ``<stage>/model`` (a transformers folder with the data
   step's tokenizer), so SFT, evaluation and publishing do not know which engine trained it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import yaml

from ...errors import RecipeError
from ...io import atomic_dir, read_json_or_none, write_text
from ...layout import DatasetDir, StageDir
from ...locking import run_lock
from . import require_nanotron
from .checkpoint import LATEST, MODEL_CONFIG, OURS
from .config import Corpus, Upstream, emit, unused_keys
from .convert import hf_to_nanotron, nanotron_to_hf, read_config
from .folders import NanotronDirs
from .launch import launch, nodes_from_env

logger = logging.getLogger(__name__)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete nanotron checkpoint of a checkpoints folder (``latest.txt`` is written last)."""
    try:
        step = int((Path(checkpoints) / LATEST).read_text().strip())
    except (OSError, ValueError):
        return None
    folder = Path(checkpoints) / str(step)
    return folder if (folder / MODEL_CONFIG).is_file() else None


def tokenizer_name(data: DatasetDir, sources: list[str]) -> str:
    """The tokenizer datatrove named in the shards' ``.metadata`` (nanotron checks its config against it)."""
    for source in sources:
        for meta in sorted(data.source_tokens(source).glob("*.metadata")):
            first = meta.read_text(encoding="utf-8").splitlines()[:1]
            if first and "|" in first[0]:
                return first[0].split("|")[0]
    return str(data.tokenizer)


def patched_updates(model_args) -> dict:
    """The transformers config keys the recipe's patches change on trained weights (the Aurora-M trim)."""
    from ...patches import AURORA_M_CONTEXT, parse_patch

    updates = {}
    for spec in model_args.config_patches:
        patch, value = parse_patch(spec)
        if patch.name == "aurora_m":
            updates.update(n_positions=int(value) if value else AURORA_M_CONTEXT, pad_token_id=0)
    return updates


def convert_input(model_args, data: DatasetDir, dst: Path, config_file) -> Path:
    """The stage's input model in nanotron's layout (converted once; again when its source changes)."""
    source = model_args.model_name_or_path
    note = {
        "input": source or f"base_config {model_args.base_config} seed {model_args.model_seed}",
        "patches": list(model_args.config_patches),
    }
    marker = read_json_or_none(dst / OURS) or {}
    if all(marker.get(k) == v for k, v in note.items()) and (dst / MODEL_CONFIG).is_file():
        return dst
    if source and Path(source).is_dir():
        return hf_to_nanotron(source, dst, overwrite=True, config_updates=patched_updates(model_args), note=note)
    if source:  # a Hub id: its safetensors and config, into the Hub cache
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            source, revision=model_args.model_revision, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
        )
        return hf_to_nanotron(local, dst, overwrite=True, config_updates=patched_updates(model_args), note=note)
    # built from a config (the tiny twin): the same model the transformers engine would start from
    from transformers import AutoTokenizer

    from ...train.model import load_model

    model = load_model(model_args, AutoTokenizer.from_pretrained(data.tokenizer), config_file)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".nanotron-init-hf-") as tmp:
        model.save_pretrained(tmp)
        return hf_to_nanotron(tmp, dst, overwrite=True, note=note)


def _upstream_stage(ctx) -> tuple[str, StageDir] | None:
    return next(iter(ctx.input_stages.items()), None)


def plan(ctx, model_args, mix_args, training_args, parallel, world_size: int | None) -> dict:
    """Convert what the stage starts from and emit its nanotron config (written to ``<stage>/nanotron.yaml``)."""
    dirs, data = ctx.dirs, DatasetDir(mix_args.dataset_dir) if mix_args.dataset_dir else ctx.dirs.data
    folders = NanotronDirs(dirs)
    mixture = read_json_or_none(data.mixture_json)
    if not mixture:
        raise RecipeError(data.root, None, "no built dataset (mixture.json): run the stage's data step first")
    up = _upstream_stage(ctx)
    up_ckpt = latest_checkpoint(NanotronDirs(up[1]).checkpoints) if up else None
    upstream = None
    if model_args.init_from == "full_state":
        if up_ckpt is None:
            raise RecipeError(
                ctx.config,
                "init_from",
                "full_state carries on the upstream's nanotron optimizer "
                "state: the upstream stage must run with engine: nanotron "
                "(or use init_from: weights)",
            )
        planned = (read_yaml_or_none(NanotronDirs(up[1]).config) or {}).get("tokens", {}).get("train_steps")
        step = int(up_ckpt.name)
        if planned and step != planned:
            raise RecipeError(
                ctx.config,
                "init_from",
                f"{up_ckpt} is step {step} of {planned}: full_state needs the upstream's last step",
            )
        upstream = Upstream(up[0], NanotronDirs(up[1]).checkpoints, step)
        init = up_ckpt
    elif up_ckpt is not None:
        init = up_ckpt  # weights of the upstream's last nanotron checkpoint, no round trip
    else:
        init = convert_input(model_args, data, folders.init, ctx.config)
    model_config = read_config(init)
    sources = [s["name"] for s in mixture.get("sources", [])]
    corpus = Corpus.from_mixture(mixture, data.source_tokens, tokenizer_name(data, sources))
    project = read_json_or_none(ctx.run.marker) or {}
    own = latest_checkpoint(folders.checkpoints)
    config = emit(
        model_args,
        mix_args,
        training_args,
        parallel,
        project=project.get("recipe", "aurora-m"),
        stage=ctx.stage,
        model_config=model_config,
        init=init,
        checkpoints=folders.checkpoints,
        corpus=corpus,
        world_size=world_size,
        upstream=upstream,
        resume_own=own is not None,
        config_file=ctx.config,
    )
    check_data(mixture, data, mix_args, config, ctx.config)
    check_own_resume(own, config, ctx.config)
    unused = unused_keys(set(yaml.safe_load(Path(ctx.config).read_text()) or {}))
    if unused:
        logger.info("%s: not used by the nanotron engine: %s", ctx.stage, ", ".join(unused))
    write_text(folders.config, yaml.safe_dump(config, sort_keys=False))
    return config


def check_data(mixture: dict, data: DatasetDir, mix_args, config: dict, config_file) -> None:
    """Before any GPU starts: the data step's windows are this config's sequences, and its stream holds every
    step's global batch (the transformers engine checks the same before loading a model)."""
    from ...data.stream import read_index_meta

    built = int(mixture.get("seq_length", 0))
    if built != mix_args.seq_length:
        raise RecipeError(
            data.mixture_json,
            "seq_length",
            f"the data step built windows of {built} tokens, the stage "
            f"trains on {mix_args.seq_length}: run its data step again",
        )
    tokens = config["tokens"]
    per_step = tokens["micro_batch_size"] * tokens["batch_accumulation_per_replica"] * config["parallelism"]["dp"]
    first = config["data_stages"][-1]["start_training_step"]
    needed = (tokens["train_steps"] - first + 1) * per_step
    length = int(read_index_meta(data.index)["length"])
    if length < needed:
        raise RecipeError(
            data.index,
            None,
            f"holds {length:,} sequences, fewer than this stage's "
            f"{tokens['train_steps'] - first + 1} steps x {per_step} (micro batch x "
            f"accumulation x dp) = {needed:,}: run its data step again",
        )


def check_own_resume(last: Path | None, config: dict, config_file) -> None:
    """A launch resuming the stage's own checkpoint has steps left and the global batch that checkpoint trained
    with (the stream positions of the steps already trained would no longer line up)."""
    if last is None:
        return
    tokens, stage = config["tokens"], config["data_stages"][-1]
    step = int(last.name)
    if step > tokens["train_steps"]:
        raise RecipeError(
            config_file,
            "train_tokens",
            f"{last} is step {step}, past this budget's last step "
            f"{tokens['train_steps']}: give the budget it trained with, "
            f"or --restart the stage",
        )
    meta = (read_json_or_none(last / "checkpoint_metadata.json") or {}).get("metas") or {}
    done = next(
        (s for s in meta.get("data_stages") or [] if s.get("start_training_step") == stage["start_training_step"]),
        None,
    )
    per_step = tokens["micro_batch_size"] * tokens["batch_accumulation_per_replica"] * config["parallelism"]["dp"]
    steps = step - stage["start_training_step"] + 1
    if done and steps > 0 and int(done.get("consumed_train_samples", 0)) != steps * per_step:
        raise RecipeError(
            config_file,
            "per_device_train_batch_size",
            f"{last} trained {steps} steps on {done['consumed_train_samples']} sequences "
            f"({int(done['consumed_train_samples']) // steps} a step), this launch's global batch is "
            f"{per_step} (micro batch x accumulation x dp): resume with the batch it trained with, "
            "or --restart the stage",
        )


def read_yaml_or_none(path: Path):
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def export(dirs: StageDir, data: DatasetDir) -> Path:
    """The last checkpoint as the stage's transformers ``model/`` folder (with the data step's tokenizer)."""
    last = latest_checkpoint(NanotronDirs(dirs).checkpoints)
    if last is None:
        raise RecipeError(NanotronDirs(dirs).checkpoints, None, "nanotron wrote no checkpoint (no latest.txt)")
    with tempfile.TemporaryDirectory(dir=dirs.root, prefix=".nanotron-export-") as tmp:
        built = nanotron_to_hf(last, Path(tmp) / "hf")
        for item in data.tokenizer.iterdir():
            shutil.copy2(item, built / item.name)
        with atomic_dir(dirs.model) as final:
            for item in built.iterdir():
                shutil.move(str(item), final / item.name)
    return dirs.model


def loss_history(losses: Path) -> list[dict]:
    """The recorded steps in order, each step's last record: a relaunch trains and logs again the steps a killed
    launch had trained after its last checkpoint."""
    import json

    steps: dict[int, dict] = {}
    try:  # a kill can cut a line short, even inside a character: such lines are skipped, not the file
        lines = Path(losses).read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
            steps[int(entry["step"])] = entry
        except (ValueError, KeyError, TypeError, OverflowError):
            continue
    return [steps[k] for k in sorted(steps)]


def write_loss_history(dirs: StageDir, title: str) -> None:
    """``log_history.json`` and ``loss.png`` of the stage, as the transformers engine leaves them."""
    from ...io import write_json
    from ...plots import plot_loss

    history = loss_history(NanotronDirs(dirs).losses)
    write_json(dirs.log_history, history)
    if history:
        plot_loss(history, dirs.loss_png, title)


def run_train_step(ctx) -> Path:
    """The pipeline's train step of a pretrain stage on nanotron: this node's GPUs, or every node of the
    Slurm job (see :func:`nodes_from_env`)."""
    from ...train.common import wired_arguments

    require_nanotron()
    model_args, mix_args, training_args, parallel = ctx.parse(*wired_arguments(ctx))
    nodes = nodes_from_env()
    with run_lock(ctx.dirs.train_lock, "training"):
        config = plan(ctx, model_args, mix_args, training_args, parallel, world_size=nodes.world_size)
        data = DatasetDir(mix_args.dataset_dir) if mix_args.dataset_dir else ctx.dirs.data
        last = latest_checkpoint(NanotronDirs(ctx.dirs).checkpoints)
        if last is not None and int(last.name) >= config["tokens"]["train_steps"]:
            # trained to the end by a launch whose export did not happen (killed after nanotron's final save):
            # nanotron refuses to resume a checkpoint that has no steps left, so only the export runs
            logger.info("%s: %s is the last step (%d): exporting it", ctx.stage, last, config["tokens"]["train_steps"])
        else:
            launch(ctx, data, nodes)
        export(ctx.dirs, data)
        write_loss_history(ctx.dirs, ctx.title)
        return ctx.dirs.model
