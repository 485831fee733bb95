"""CAP and CAT: continual pretraining of a causal LM on a packed mixture with transformers' Trainer."""

from __future__ import annotations

import logging
from pathlib import Path

from ..args import MixtureArguments, ModelArguments
from ..budget import check_budget, derive_max_steps
from ..data.build import build_pretrain_dataset
from ..data.mixture import packed_collator
from ..data.stream import open_stream
from ..errors import RecipeError
from ..layout import StageDir
from ..model_families import model_facts
from .checkpoints import resume_checkpoint, stream_position_callback
from .common import keep_token_out_of_files, stage_dataset, train_and_save, wired_arguments
from .handoff import UpstreamState, carry_on_schedule, load_upstream_optimizer, upstream_state
from .model import load_model, parameter_count
from .monitor import heldout_eval_sets, monitor_callbacks

logger = logging.getLogger(__name__)


def train_pretrain(
    model_args: ModelArguments,
    mix_args: MixtureArguments,
    training_args,
    config_file: str | Path = "<stage config>",
    title: str = "pretraining",
) -> Path:
    """Train on the stage's packed dataset (built first if missing) and return the final model folder."""
    trainer = build_trainer(model_args, mix_args, training_args, config_file, title)
    return train_and_save(trainer, StageDir(training_args.output_dir), title)


def build_trainer(
    model_args: ModelArguments,
    mix_args: MixtureArguments,
    training_args,
    config_file: str | Path = "<stage config>",
    title: str = "pretraining",
):
    """The stage's Trainer, ready to train: dataset built (once, across nodes), model loaded, stream attached."""
    from transformers import AutoTokenizer

    dirs = StageDir(training_args.output_dir)
    # the budget over this launch's ranks before the data step (hours at scale): a max_steps stated for one
    # process, launched on two, is one line now rather than after the dataset is built
    check_budget(training_args, mix_args.train_tokens, mix_args.seq_length, config_file)
    data = stage_dataset(
        training_args,
        mix_args.dataset_dir,
        lambda folder: build_pretrain_dataset(model_args, mix_args, folder, config_file, title),
    )
    tokenizer = AutoTokenizer.from_pretrained(data.tokenizer)
    train_ds = open_stream(data)
    seq_length = train_ds.seq_length
    if seq_length != mix_args.seq_length:  # a script reuses a built folder as is: say so, do not train on it
        raise RecipeError(
            config_file,
            "seq_length",
            f"{mix_args.seq_length}, but the dataset in {data.root} was "
            f"built with {seq_length}: use another --output_dir (or "
            "--dataset_dir), or run it through aurora-m, which rebuilds",
        )
    model = load_model(model_args, tokenizer, config_file)
    facts = model_facts(model.config.to_dict())
    if facts.positions and seq_length > facts.positions:
        kind = "learned positions" if facts.family.learned_positions else "positions"
        raise RecipeError(
            config_file,
            "seq_length",
            f"{seq_length} is longer than the model's {facts.positions} {kind} ({facts.family.positions_key})",
        )
    logger.info("%s: %s parameters; %s", title, f"{parameter_count(model):,}", facts.describe())
    budget = derive_max_steps(training_args, mix_args.train_tokens, seq_length, config_file)
    if budget.steps * budget.sequences_per_step > len(train_ds):
        raise RecipeError(
            data.index,
            None,
            f"holds {len(train_ds):,} sequences, fewer than the "
            f"{budget.steps * budget.sequences_per_step:,} the budget trains: "
            "it was built for another train_tokens; run the data step again",
        )
    upstream = upstream_state(model_args, config_file, resume_checkpoint(training_args, dirs))
    keep_token_out_of_files(training_args)
    position = stream_position_callback(budget.sequences_per_step, seq_length, data.index)
    trainer = stream_trainer()(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=heldout_eval_sets(data, training_args),
        data_collator=packed_collator,
        processing_class=tokenizer,
        callbacks=[position],
        upstream=upstream,
    )
    for callback in monitor_callbacks(trainer, dirs, mix_args, title, config_file):
        trainer.add_callback(callback)
    return trainer


def stream_trainer():
    """A Trainer that reads the stream in order: the index is already a seeded shuffle, so position p of the
    stream is the p-th sequence trained on (split across ranks by accelerate), and a resume continues it.
    With ``init_from: full_state`` it also carries the upstream's optimizer state and schedule position on."""
    import torch
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_callback import ExportableState

    class CarryOn(TrainerCallback, ExportableState):
        def __init__(self, trainer):
            self.trainer = trainer

        def state(self) -> dict:  # kept in every checkpoint: a resume carries on from the same step
            up = self.trainer.upstream
            return {"args": {"checkpoint": str(up.checkpoint), "step": up.step}, "attributes": {}}

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:  # a resume has its own optimizer state in its checkpoint
                load_upstream_optimizer(self.trainer, self.trainer.upstream)

    class StreamTrainer(Trainer):
        def __init__(self, *args, upstream: UpstreamState | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.upstream = upstream
            if upstream:
                self.add_callback(CarryOn(self))

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return torch.utils.data.SequentialSampler(dataset)

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None and self.upstream:
                from transformers import get_scheduler

                total = self.upstream.step + num_training_steps
                self.lr_scheduler = carry_on_schedule(
                    get_scheduler(
                        self.args.lr_scheduler_type,
                        optimizer=optimizer or self.optimizer,
                        num_warmup_steps=self.args.get_warmup_steps(total),
                        num_training_steps=total,
                        scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
                    ),
                    self.upstream.step,
                )
                self._created_lr_scheduler = True
            return super().create_scheduler(num_training_steps, optimizer)

    return StreamTrainer


def run_train_step(ctx) -> Path:
    """The pipeline's train step of a pretrain stage: continues from the input model, reads the data step's folder."""
    model_args, mix_args, training_args = ctx.parse(*wired_arguments(ctx))
    return train_pretrain(model_args, mix_args, training_args, ctx.config, ctx.title)
