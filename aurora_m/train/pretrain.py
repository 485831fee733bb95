"""CAP and CAT: continual pretraining of a causal LM on a packed mixture with transformers' Trainer."""

from __future__ import annotations

from pathlib import Path

from ..args import MixtureArguments, ModelArguments
from ..errors import RecipeError
from ..data.build import dataset_dir_for
from ..data.mixture import packed_collator
from .common import describe_budget, train_and_save
from .model import load_model, parameter_count


def train_pretrain(model_args: ModelArguments, mix_args: MixtureArguments, training_args,
                   config_file: str | Path = "<stage config>", title: str = "pretraining") -> Path:
    """Train on the stage's packed dataset (built first if missing) and return the final model folder."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer, Trainer

    dataset_dir = dataset_dir_for(mix_args, training_args)
    if not (dataset_dir / "train").is_dir():
        from ..data.build import build_pretrain_dataset

        with training_args.main_process_first(desc="build dataset"):
            if not (dataset_dir / "train").is_dir():
                build_pretrain_dataset(model_args, mix_args, dataset_dir, config_file, title)
    tokenizer = AutoTokenizer.from_pretrained(dataset_dir / "tokenizer")
    train_ds = load_from_disk(str(dataset_dir / "train"))
    seq_length = len(train_ds[0]["input_ids"])
    model = load_model(model_args, tokenizer)
    if seq_length > model.config.n_positions:
        raise RecipeError(config_file, "seq_length",
                          f"{seq_length} is longer than the model's {model.config.n_positions} learned positions")
    print(f"[train] {title}: {parameter_count(model):,} parameters, {model.config.n_layer} layers, "
          f"n_positions {model.config.n_positions}, multi_query {model.config.multi_query}")
    print(describe_budget(training_args, seq_length, len(train_ds)))
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, data_collator=packed_collator,
                      processing_class=tokenizer)
    return train_and_save(trainer, title)
