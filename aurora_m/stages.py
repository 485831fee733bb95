"""THE table of stage kinds and engines. Adding a kind is one :func:`register_kind` call plus its module.

A kind declares the dataclasses its YAML fills, its steps (each with its own completion marker),
the list of sources it requires, whether it produces a model (and so may name a variant), which
stages it accepts as inputs, and one runner per step for each engine it supports. Runners are named
lazily (``"package.module:function"``), so this table never imports the stage packages; a runner
receives a :class:`aurora_m.context.StepContext` and nothing else.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

# What a stage may take as inputs: nothing or one model stage (it continues from its weights), one or
# more model stages (it evaluates them), stages that evaluate models (it publishes what they evaluated).
ONE_MODEL = "one_model_or_none"
MODELS = "models"
EVALUATIONS = "evaluations"
ANY = "any"


@dataclass(frozen=True)
class Engine:
    name: str
    module: str  # importable when the engine is installed
    install: str  # what to run when it is not
    # "module:function" that raises a RecipeError when the installed engine cannot run here (a broken or partial
    # install: PyPI's nanotron 0.4, a node without flash-attn); checked before any step runs
    check: str | None = None


@dataclass(frozen=True)
class StageKind:
    name: str
    dataclasses: Callable[[], tuple[type, ...]] | str  # lazily: the dataclasses a stage YAML fills
    steps: tuple[str, ...]
    runners: dict[str, dict[str, Callable | str]]  # engine -> step -> runner(ctx) or "module:function"
    source_key: str | None = None  # the list of sources a stage of this kind must have
    produces_model: bool = False
    evaluates: bool = False  # a publish stage takes the stages of kinds that evaluate
    inputs: str = ANY
    resumable_step: str | None = None  # the step that leaves checkpoints to resume from
    # The first step reads only these dataclasses' keys (model + data, not the trainer's): editing a
    # trainer key re-runs training, not the data step. Light imports: no transformers needed.
    data_dataclasses: Callable[[], tuple[type, ...]] | str | None = None
    # The data step reads source files and a tokenizer, not the input model: it can run (on a CPU node)
    # before the stages upstream have trained; the tokenizer comes from the first stage of the chain.
    data_reads_inputs: bool = True
    # The steps that run on the stage's engine; the others (the data step: datatrove and a tokenizer) run in
    # any environment, so a nanotron stage's data can be built where nanotron is not installed.
    engine_steps: tuple[str, ...] | None = None  # None: every step
    help: str = ""

    @property
    def data_step(self) -> str | None:
        return self.steps[0] if self.data_dataclasses is not None else None

    def runs_on_engine(self, step: str) -> bool:
        return step in (self.steps if self.engine_steps is None else self.engine_steps)

    def dataclass_types(self) -> tuple[type, ...]:
        return _call(self.dataclasses)

    def standalone(self, step: str) -> bool:
        """Whether ``step`` runs without its stage's inputs being complete."""
        return step == self.data_step and not self.data_reads_inputs

    def data_keys(self) -> set[str]:
        # keys the trainer alone reads (the forgetting probes) do not make the dataset stale
        return {
            f
            for dc in _call(self.data_dataclasses)
            for f in dc.__dataclass_fields__
            if f not in getattr(dc, "TRAIN_ONLY_KEYS", ())
        }

    def runner(self, engine: str, step: str) -> Callable:
        target = self.runners[engine][step]
        return _load(target) if isinstance(target, str) else target


def _call(factory) -> tuple:
    return tuple(_load(factory)() if isinstance(factory, str) else factory())


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


ENGINES: dict[str, Engine] = {}
KINDS: dict[str, StageKind] = {}


def register_engine(engine: Engine) -> Engine:
    ENGINES[engine.name] = engine
    return engine


def register_kind(kind: StageKind) -> StageKind:
    """Add (or replace) a stage kind; recipes can name it from then on."""
    for engine in kind.runners:
        if engine not in ENGINES:
            raise ValueError(f"stage kind {kind.name!r}: unknown engine {engine!r} (known: {', '.join(ENGINES)})")
        missing = set(kind.steps) - set(kind.runners[engine])
        if missing:
            raise ValueError(f"stage kind {kind.name!r}: engine {engine!r} has no runner for {sorted(missing)}")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    KINDS.pop(name, None)


def engine_problem(engine_name: str) -> str | None:
    """Why an engine cannot run here (with the install hint), or None."""
    from .errors import RecipeError

    engine = ENGINES[engine_name]
    if importlib.util.find_spec(engine.module) is None:
        return f"engine {engine_name!r} is not installed: {engine.install}"
    if engine.check:
        try:
            _load(engine.check)()
        except RecipeError as err:
            return err.message
    return None


# ----------------------------------------------------------------------------- the kinds of this project
def _pretrain_dataclasses():
    from transformers import TrainingArguments

    from .args import MixtureArguments, ModelArguments

    return ModelArguments, MixtureArguments, TrainingArguments


def _pretrain_data_dataclasses():
    from .args import MixtureArguments, ModelArguments

    return ModelArguments, MixtureArguments


def _sft_data_dataclasses():
    from .args import ModelArguments, SFTDataArguments

    return ModelArguments, SFTDataArguments


def _sft_dataclasses():
    from trl import SFTConfig

    from .args import ModelArguments, SFTDataArguments

    return ModelArguments, SFTDataArguments, SFTConfig


def _eval_dataclasses():
    from transformers import TrainingArguments

    from .args import EvalArguments

    return EvalArguments, TrainingArguments


def _publish_dataclasses():
    from .args import PublishArguments

    return (PublishArguments,)


register_engine(Engine("transformers", "transformers", "pip install 'transformers>=5' accelerate"))
register_engine(
    Engine(
        "nanotron",
        "nanotron",
        "install nanotron from a pinned source commit on the GPU nodes (PyPI 0.4 does not import; "
        "see README, 'nanotron engine')",
        check="aurora_m.engines.nanotron:require_nanotron",
    )
)

register_kind(
    StageKind(
        name="pretrain",
        dataclasses=_pretrain_dataclasses,
        steps=("data", "train"),
        source_key="mixture",
        produces_model=True,
        inputs=ONE_MODEL,
        resumable_step="train",
        data_dataclasses=_pretrain_data_dataclasses,
        data_reads_inputs=False,
        engine_steps=("train",),
        runners={
            "transformers": {
                "data": "aurora_m.data.step:run_data_step",
                "train": "aurora_m.train.pretrain:run_train_step",
            },
            # the same datatrove shards; training in nanotron (TP x PP x DP), exported back to transformers
            "nanotron": {
                "data": "aurora_m.data.step:run_data_step",
                "train": "aurora_m.engines.nanotron.runner:run_train_step",
            },
        },
        help="continual pretraining (CAP, CAT) on a packed mixture with transformers' Trainer or nanotron",
    )
)
register_kind(
    StageKind(
        name="sft",
        dataclasses=_sft_dataclasses,
        steps=("data", "train"),
        source_key="sft_sources",
        produces_model=True,
        inputs=ONE_MODEL,
        resumable_step="train",
        data_dataclasses=_sft_data_dataclasses,
        data_reads_inputs=False,
        engine_steps=("train",),
        runners={
            "transformers": {"data": "aurora_m.data.step:run_data_step", "train": "aurora_m.train.sft:run_train_step"}
        },
        help="supervised fine-tuning (safety SFT) with TRL's SFTTrainer, loss on responses only",
    )
)
register_kind(
    StageKind(
        name="eval",
        dataclasses=_eval_dataclasses,
        steps=("eval",),
        source_key="perplexity_sources",
        evaluates=True,
        inputs=MODELS,
        runners={"transformers": {"eval": "aurora_m.evaluation.stage:run_eval_step"}},
        help="per-language held-out perplexity of every input model",
    )
)
register_kind(
    StageKind(
        name="publish",
        dataclasses=_publish_dataclasses,
        steps=("publish",),
        inputs=EVALUATIONS,
        runners={"transformers": {"publish": "aurora_m.hub.variants:run_publish_step"}},
        help="one export folder (weights, model card, plots) per evaluated variant",
    )
)
