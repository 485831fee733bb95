"""What ``torchrun`` starts on every GPU of a nanotron stage: nanotron's trainer with our model and our data.

    torchrun --nproc_per_node=8 -m aurora_m.engines.nanotron.entry --config-file RUN/cap/nanotron.yaml \
        --data RUN/cap/data

``DistributedTrainer`` gets the GPTBigCode model through its model-class hook and reads the YAML with a
``Config`` whose ``model_config`` is our GPTBigCodeConfig (:mod:`.model`). Its training loop is fed the data
step's packed stream (:mod:`.batches`), not ``run_train.py``'s tokenized-bytes loader (which needs an unreleased
datatrove branch), so no source checkout's script is run. The learning rate follows this config's schedule
even when the optimizer and scheduler state come from the upstream stage (``init_from: full_state``: the step
count carries on, the rates are this stage's, as in the transformers engine).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ...errors import RecipeError, exit_on_failure
from . import require_nanotron

logger = logging.getLogger(__name__)


def follow_this_schedule(trainer) -> None:
    """Learning rate = this config's schedule at the global step, whatever rate a loaded state held.

    nanotron builds its LambdaLR after loading the optimizer state, so each lambda's ``initial_lr`` is the rate
    the checkpoint's last step trained at (CAP's last rate for CAT, the warmup's rate at a resumed step), and a
    loaded scheduler state brings the base rate of the run that saved it. Both become this config's rate (standard
    parametrization: one rate for every group). The step count is the trained steps of the checkpoint (nanotron's
    loader steps the scheduler once more after loading its state, so a resumed run would skip a step of the
    schedule), so the schedule carries on where it stopped.
    """
    from functools import partial

    lr = float(trainer.config.optimizer.learning_rate_scheduler.learning_rate)
    scheduler = trainer.lr_scheduler
    scheduler.lr_lambdas = [partial(lam.func, initial_lr=lr) for lam in scheduler.lr_lambdas]
    scheduler.base_lrs = [lr] * len(scheduler.lr_lambdas)
    scheduler.last_epoch = int(trainer.metadata.last_train_step)
    for group, lam in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * lam(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def restore_random_states(trainer) -> bool:
    """A launch resuming its own stage's checkpoint carries on with the random states saved in it (dropout), as an
    uninterrupted run would: nanotron saves its own but does not load them, and does not save torch's
    (:func:`keep_rng_states` does). nanotron's file is read with torch's weights-only unpickler, allowing only the
    classes a random-state file holds. A checkpoint of the upstream stage (CAT starting on CAP's) starts this
    stage's own random stream from its seed, as the transformers engine does."""
    import numpy as np
    import torch
    from nanotron.random import RandomState, RandomStates
    from nanotron.serialize.random import load_random_states

    path = trainer.init_checkpoint_path
    stage = trainer.config.data_stages[-1]  # the stage this launch trains (an upstream one comes first)
    if path is None or not stage_consumed_samples(trainer.metadata, stage):
        return False
    allowed = [
        RandomState,
        RandomStates,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
        (getattr(np, "_core", None) or np.core).multiarray._reconstruct,
    ]
    with torch.serialization.safe_globals(allowed):
        saved = load_random_states(trainer.parallel_context, Path(path))
    for name, state in saved.items():  # in place: the model's blocks hold this mapping
        trainer.random_states[name] = state
    own = Path(path) / RNG_STATES / _rng_file(trainer)
    if own.is_file():
        from safetensors.torch import load_file

        states = load_file(own)
        torch.set_rng_state(states["cpu"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state(states["cuda"])
    return True


RNG_STATES = "aurora-m-rng"  # beside nanotron's folders in a checkpoint: torch's generator states, per rank


def _rng_file(trainer) -> str:
    import torch.distributed as dist

    context = trainer.parallel_context
    return (
        "_".join(
            f"{name}-{dist.get_rank(group)}-of-{group.size()}"
            for name, group in (("tp", context.tp_pg), ("pp", context.pp_pg), ("dp", context.dp_pg))
        )
        + ".safetensors"
    )


def global_rng_states() -> dict:
    """torch's own generators (CPU, and this process's GPU): attention dropout draws from them, not from
    nanotron's own random states."""
    import torch

    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def keep_rng_states(trainer) -> None:
    """Save every rank's torch generator states with every checkpoint (nanotron saves its own random states,
    the fp32 master weights and the optimizer, not these)."""
    import torch.distributed as dist
    from safetensors.torch import save

    from ...io import write_bytes

    save_checkpoint = trainer.save_checkpoint

    def saving():
        path = save_checkpoint()
        write_bytes(Path(path) / RNG_STATES / _rng_file(trainer), save(global_rng_states()))
        dist.barrier(trainer.parallel_context.world_pg)
        return path

    trainer.save_checkpoint = saving


def stage_metadata(metadata, stage):
    """nanotron's record of this data stage in the loaded checkpoint's metadata, or None for a new stage."""
    return next(
        (done for done in metadata.data_stages or [] if done.start_training_step == stage.start_training_step), None
    )


def stage_consumed_samples(metadata, stage) -> int:
    """What nanotron's checkpoint metadata says this data stage already trained on (0 for a new stage)."""
    done = stage_metadata(metadata, stage)
    return int(done.consumed_train_samples) if done else 0


def add_new_data_stages(trainer) -> None:
    """Record in the training metadata each data stage of this config that the loaded checkpoint does not know
    (CAT resuming CAP's checkpoint), with its sequence length. nanotron adds such a stage itself, but without
    one, so it takes its 4096 placeholder and fails its sequence-length check after the first step."""
    from nanotron.serialize.metadata import DataStageMetadata

    metadata = trainer.metadata
    known = {done.start_training_step for done in metadata.data_stages or []}
    for stage in trainer.config.data_stages:  # in order: the metadata's stage list lines up with the config's
        if stage.start_training_step not in known:
            metadata.data_stages = [
                *(metadata.data_stages or []),
                DataStageMetadata(
                    name=stage.name,
                    start_training_step=stage.start_training_step,
                    consumed_train_samples=0,
                    sequence_length=stage.sequence_length,
                ),
            ]


def record_losses(trainer, path: str) -> None:
    """Append each logged step's loss and learning rate to ``path`` (JSON lines, stage-local step numbers, as the
    transformers engine counts them), from the one rank that holds the data-parallel average: the last
    pipeline stage's first tensor and data-parallel rank."""
    import json

    import torch.distributed as dist
    from nanotron.parallel.pipeline_parallel.utils import get_input_output_pp_ranks

    context = trainer.parallel_context
    _, output_rank = get_input_output_pp_ranks(model=trainer.model)
    ranks = (dist.get_rank(context.pp_pg), dist.get_rank(context.tp_pg), dist.get_rank(context.dp_pg))
    if ranks != (output_rank, 0, 0):
        return
    logs = trainer.train_step_logs

    def logged(outputs, loss_avg, z_loss_avg, tbi_logs):
        logs(outputs=outputs, loss_avg=loss_avg, z_loss_avg=z_loss_avg, tbi_logs=tbi_logs)
        stage = trainer.config.data_stages[trainer.metadata.last_stage_idx]
        entry = {
            "step": trainer.iteration_step - stage.start_training_step + 1,
            "loss": round(float(loss_avg), 6),
            "learning_rate": trainer.lr_scheduler.get_last_lr()[0],
            "global_step": trainer.iteration_step,
        }
        with open(path, "a", encoding="utf-8") as out:  # a line per step: flat cost, whatever the run's length
            out.write(json.dumps(entry) + "\n")

    trainer.train_step_logs = logged


def dataloaders(trainer, data_dir: str) -> dict:
    """``{data stage: a callable making its DataLoader}`` for ``trainer.train``: the stage this launch trains
    reads the data step's stream; a finished upstream stage (listed for ``full_state``) is never called."""
    import torch
    from nanotron.parallel.pipeline_parallel.tensor_pointer import TensorPointer
    from nanotron.parallel.pipeline_parallel.utils import get_input_output_pp_ranks
    from torch.utils.data import DataLoader

    from ...data.stream import open_stream
    from ...layout import DatasetDir
    from .batches import Shape, StageBatches

    data = DatasetDir(data_dir)
    context = trainer.parallel_context
    shape = Shape(trainer.micro_batch_size, trainer.n_micro_batches_per_batch, context.dp_pg.size())
    input_rank, output_rank = get_input_output_pp_ranks(model=trainer.model)
    pp_rank = torch.distributed.get_rank(context.pp_pg)

    def make(stage):
        def build():
            stream = open_stream(data)
            if stream.seq_length != trainer.sequence_length:
                raise RecipeError(
                    data.root,
                    "seq_length",
                    f"the data step built windows of {stream.seq_length} "
                    f"tokens, the config trains on {trainer.sequence_length}",
                )
            folders = {name: str(data.source_tokens(name)) for name in stream.names}
            batches = StageBatches(
                stream,
                shape,
                torch.distributed.get_rank(context.dp_pg),
                folders=folders,
                start_training_step=stage.start_training_step,
                consumed_samples=stage_consumed_samples(trainer.metadata, stage),
                consumed_tokens=getattr(
                    stage_metadata(trainer.metadata, stage), "consumed_tokens_per_dataset_folder", None
                ),
                reads_inputs=pp_rank == input_rank,
                reads_labels=pp_rank == output_rank,
                pointer=TensorPointer,
                input_rank=input_rank,
                output_rank=output_rank,
            )
            workers = stage.data.num_loading_workers if stage.data else 0
            logger.info(
                "data stage %s: %d global batches of %d windows in %s, from micro batch %d of this rank",
                stage.name,
                batches.steps,
                shape.global_batch,
                data.index,
                batches.first,
            )
            # its own generator: an iterator's seed is otherwise drawn from torch's global one, which a resumed
            # launch has just restored for dropout (one draw more and no step after a resume would be the same)
            return DataLoader(
                batches, batch_size=None, sampler=batches.sampler(), num_workers=workers, generator=torch.Generator()
            )

        return build

    return {stage.name: make(stage) for stage in trainer.config.data_stages}


def check_stage_engine(recipe_dir: str, stage_name: str) -> None:
    """A launch of nanotron on every node is for a stage that trains on nanotron (not, say, an SFT stage that
    would then run as one process on the first node)."""
    from ...recipe import load_recipe

    recipe = load_recipe(recipe_dir, check_stages=False)
    stage = recipe.stage(stage_name)
    if stage.engine != "nanotron":
        nanotron = [s.name for s in recipe.stages if s.engine == "nanotron"]
        raise RecipeError(
            recipe.file,
            f"stages[{stage.position}].engine",
            f"stage {stage_name!r} runs on {stage.engine}, not nanotron (nanotron stages: "
            f"{', '.join(nanotron) or 'none'}); launch it with recipes/launch.slurm pretrain/sft",
        )


def make_trainer(trainer_class, config_file: str, config_class, model_class):
    """nanotron's trainer on the emitted YAML; a file that is missing or is not such a config is one line."""
    import dacite
    import yaml

    try:
        text = Path(config_file).read_text(encoding="utf-8")
        if not isinstance(yaml.safe_load(text), dict):
            raise RecipeError(
                config_file,
                None,
                "not a nanotron config (a YAML mapping): give the nanotron.yaml the train step wrote",
            )
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RecipeError(config_file, None, f"cannot be read as a nanotron config ({err})") from None
    try:
        return trainer_class(config_file, config_class=config_class, model_class=model_class)
    except dacite.DaciteError as err:
        raise RecipeError(
            config_file,
            None,
            f"not a nanotron config of this engine ({err}): give the nanotron.yaml the train step wrote",
        ) from None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", help="the nanotron YAML the train step emitted")
    parser.add_argument("--data", help="the data step's folder (its sampling index and token shards)")
    parser.add_argument("--loss-log", help="append each logged step's loss here (JSON lines)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="no training: exit 0 when nanotron's trainer can be imported here (and, with "
        "--recipe and --stage, that stage trains on nanotron), else one line (exit 2); "
        "recipes/launch.slurm runs it first",
    )
    parser.add_argument("--recipe", help="with --check: a pipeline folder")
    parser.add_argument("--stage", help="with --check: the stage of --recipe that is about to be launched")
    parser.add_argument(
        "--dump-logits",
        nargs=2,
        metavar=("IDS", "OUT"),
        help="no training: the logits of the loaded model for the token ids in IDS (torch.save of a "
        "[batch, seq] tensor), gathered over TP and saved to OUT by rank 0 (pp 1 only)",
    )
    return parser


def dump_logits(trainer, ids_file: str, out_file: str) -> None:
    """The model's forward on fixed ids, as nanotron computes it (scripts/nanotron_check.py compares it)."""
    import torch
    import torch.distributed as dist

    model = trainer.unwrapped_model.eval()
    ids = torch.load(ids_file).to(next(model.parameters()).device)
    with torch.no_grad():
        sharded = model.model(input_ids=ids, input_mask=torch.ones_like(ids, dtype=torch.bool))  # [seq, b, v/tp]
    tp_pg = trainer.parallel_context.tp_pg
    parts = [torch.empty_like(sharded) for _ in range(tp_pg.size())]
    dist.all_gather(parts, sharded.contiguous(), group=tp_pg)
    if dist.get_rank() == 0:
        torch.save(torch.cat(parts, dim=-1).transpose(0, 1).float().cpu(), out_file)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.check and not (args.config_file and args.data):
        parser.error("--config-file and --data are required (or --check)")
    if bool(args.recipe) != bool(args.stage) or (args.recipe and not args.check):
        parser.error("--recipe and --stage go together, with --check")
    logging.basicConfig(level=logging.INFO)
    try:
        if args.recipe:
            check_stage_engine(args.recipe, args.stage)
        nanotron = require_nanotron()
        if args.check:
            logger.info(
                "nanotron %s loads from %s", getattr(nanotron, "__version__", "?"), Path(nanotron.__file__).parent
            )
            return 0
        from nanotron.trainer import DistributedTrainer

        from .model import classes

        model_class, config_class = classes()
        trainer = make_trainer(DistributedTrainer, args.config_file, config_class, model_class)
        if args.dump_logits:
            dump_logits(trainer, *args.dump_logits)
            return 0
        follow_this_schedule(trainer)
        add_new_data_stages(trainer)
        if restore_random_states(trainer):
            logger.info("random states restored from %s", trainer.init_checkpoint_path)
        keep_rng_states(trainer)
        if args.loss_log:
            record_losses(trainer, args.loss_log)
        trainer.train(dataloaders(trainer, args.data))
        return 0
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora-m nanotron", exc)


if __name__ == "__main__":
    sys.exit(main())
