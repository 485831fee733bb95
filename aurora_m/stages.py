"""THE table of stage kinds and engines. Adding a kind is one :func:`register_kind` call plus its module; adding
an engine is one :func:`register_engine` entry plus its package.

A kind declares the dataclasses its YAML fills, its steps (each with its own completion marker),
the list of sources it requires, whether it produces a model (and so may name a variant), which
stages it accepts as inputs, the checks of its own keys, and one runner per step for its default engine.
Runners and checks are named lazily (``"package.module:function"``), so this table never imports the stage
packages; a runner receives a :class:`aurora_m.context.StepContext` and nothing else.

An engine (``engines/<name>/`` exports one :class:`Engine`, listed here by ``"module:ENGINE"``) declares the
steps of existing kinds it runs instead of the default, the keys a stage on it adds, the checkpoint folders it
resumes from (and how they are set aside), and the ``aurora-m convert`` directions between its checkpoints and
transformers'. The pipeline and the CLI reach engines only through these hooks and never spell their names.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

# What a stage may take as inputs: nothing or one model stage (it continues from its weights), one or
# more model stages (it evaluates them), stages that evaluate models (it publishes what they evaluated).
ONE_MODEL = "one_model_or_none"
MODELS = "models"
EVALUATIONS = "evaluations"
ANY = "any"


DEFAULT_ENGINE = "transformers"


@dataclass(frozen=True)
class Engine:
    name: str
    module: str  # importable when the engine is installed
    install: str  # what to run when it is not
    # "module:function" that raises a RecipeError when the installed engine cannot run here (a broken or partial
    # install: PyPI's nanotron 0.4, a node without flash-attn); checked before any step runs
    check: str | None = None
    # kind -> step -> runner(ctx) or "module:function": the steps of existing kinds this engine runs (the kind's
    # own runners serve the rest, e.g. the data step, which runs in any environment)
    runners: dict[str, dict[str, Callable | str]] = field(default_factory=dict)
    # the hooks, each a callable or "module:name", all optional:
    arguments: Callable | str | None = None  # a dataclass of the keys a stage on this engine adds (nanotron: tp, pp)
    checkpoints: Callable | str | None = None  # (StageDir) -> [Path]: what a stage resumes from, oldest first
    set_aside: Callable | str | None = None  # (StageDir, folder) -> None: move those (and what belongs) into folder
    convert: Callable | str | None = None  # (argparse subparsers) -> None: its `aurora-m convert` directions
    help: str = ""

    def hook(self, name: str):
        """The hook ``name`` (imported on first use), or None when the engine has none."""
        target = getattr(self, name)
        return _load(target) if isinstance(target, str) else target


@dataclass(frozen=True)
class StageKind:
    name: str
    dataclasses: Callable[[], tuple[type, ...]] | str  # lazily: the dataclasses a stage YAML fills
    steps: tuple[str, ...]
    runners: dict[str, dict[str, Callable | str]]  # engine -> step -> runner(ctx) or "module:function"
    # (the default engine's here; another engine lists the steps it takes over in its own Engine.runners)
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
    # "module:function" checks of the kind's own keys, each called with a stage_checks.StageConfig after the
    # checks every kind shares; they live in the package that owns the keys (named lazily, as runners are)
    checks: tuple[str, ...] = ()
    # "module:function"(lineage step) -> markdown or None: the kind's own section of a model card's "Training
    # data" (read from the files its steps wrote), for what the mixture and SFT tables do not show
    card: Callable | str | None = None
    # "module:function"(config, config_file, stage_name): what this machine must allow for a stage of the kind to
    # run (an opt-in, not a key), checked by `aurora-m run` before its first step, so that a run does not train
    # for hours and then stop at this stage
    preflight: tuple[str, ...] = ()
    help: str = ""

    @property
    def data_step(self) -> str | None:
        return self.steps[0] if self.data_dataclasses is not None else None

    def card_section(self, step) -> str | None:
        """The kind's own section of a model card for one lineage step (None: the kind has none)."""
        if self.card is None:
            return None
        return (_load(self.card) if isinstance(self.card, str) else self.card)(step)

    def check_preflight(self, config: dict, config_file, stage_name: str) -> None:
        for check in self.preflight:
            _load(check)(config, config_file, stage_name)

    def runs_on_engine(self, step: str) -> bool:
        return step in (self.steps if self.engine_steps is None else self.engine_steps)

    def dataclass_types(self, engine: str = DEFAULT_ENGINE) -> tuple[type, ...]:
        """The dataclasses a stage of this kind fills on ``engine``: the kind's, then the engine's own keys."""
        extra = get_engine(engine).hook("arguments") if engine in ENGINES else None
        return _call(self.dataclasses) + ((extra,) if extra else ())

    def engines(self) -> list[str]:
        """The engines a stage of this kind may name: those with a runner for each of its engine steps."""
        steps = set(self.steps if self.engine_steps is None else self.engine_steps)
        own = [name for name in self.runners if name in ENGINES]
        taken = [
            name for name in ENGINES if name not in own and steps <= set(get_engine(name).runners.get(self.name, {}))
        ]
        return own + taken

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

    def key_checks(self) -> list[Callable]:
        return [_load(target) for target in self.checks]

    def runner(self, engine: str, step: str) -> Callable:
        """The runner of ``step`` on ``engine``: the kind's own for that engine, the engine's for this kind, or
        (for a step that does not run on the engine, the data step) the default engine's."""
        target = self.runners.get(engine, {}).get(step) or get_engine(engine).runners.get(self.name, {}).get(step)
        if target is None and not self.runs_on_engine(step):
            target = self.runners[DEFAULT_ENGINE][step]
        return _load(target) if isinstance(target, str) else target


def _call(factory) -> tuple:
    return tuple(_load(factory)() if isinstance(factory, str) else factory())


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


ENGINES: dict[str, Engine | str] = {}  # name -> the engine, or "module:ENGINE" until first used
KINDS: dict[str, StageKind] = {}


def register_engine(engine: Engine | str, name: str | None = None) -> Engine | str:
    """Add (or replace) an engine: an :class:`Engine`, or ``"module:ENGINE"`` with its ``name`` (loaded when
    first used, so listing an engine imports nothing)."""
    ENGINES[name or engine.name] = engine
    return engine


def unregister_engine(name: str) -> None:
    ENGINES.pop(name, None)


def get_engine(name: str) -> Engine:
    engine = ENGINES[name]
    if isinstance(engine, str):
        engine = ENGINES[name] = _load(engine)
    return engine


def engines() -> list[Engine]:
    return [get_engine(name) for name in ENGINES]


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

    engine = get_engine(engine_name)
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


register_engine("aurora_m.engines.transformers:ENGINE", "transformers")
register_engine("aurora_m.engines.nanotron:ENGINE", "nanotron")

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
                "data": "aurora_m.data.step:run_pretrain_data_step",
                "train": "aurora_m.train.pretrain:run_train_step",
            },
        },
        checks=(
            "aurora_m.data.checks:check_corpus_keys",
            "aurora_m.data.checks:check_training_data_keys",
            "aurora_m.safety.checks:check_taxonomies",
            "aurora_m.train.checks:check_init_from",
            "aurora_m.train.checks:check_lora_keys",
            "aurora_m.train.checks:check_forgetting_probes",
        ),
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
            "transformers": {
                "data": "aurora_m.data.step:run_sft_data_step",
                "train": "aurora_m.train.sft:run_train_step",
            }
        },
        checks=(
            "aurora_m.data.checks:check_training_data_keys",
            "aurora_m.safety.checks:check_taxonomies",
            "aurora_m.train.checks:check_init_from",
            "aurora_m.train.checks:check_lora_keys",
        ),
        help="supervised fine-tuning (safety SFT) with TRL's SFTTrainer, loss on responses only",
    )
)
register_kind(
    StageKind(
        name="eval",
        dataclasses="aurora_m.evaluation.arguments:eval_dataclasses",
        steps=("eval",),
        source_key="perplexity_sources",
        evaluates=True,
        inputs=MODELS,
        runners={"transformers": {"eval": "aurora_m.evaluation.stage:run_eval_step"}},
        checks=("aurora_m.safety.checks:check_taxonomies", "aurora_m.evaluation.checks:check_eval_keys"),
        preflight=("aurora_m.evaluation.checks:check_code_opt_in",),
        help="every input model through the suites the stage names (perplexity, code, harness, safety)",
    )
)
register_kind(
    StageKind(
        name="publish",
        dataclasses="aurora_m.hub.arguments:publish_dataclasses",
        steps=("publish",),
        inputs=EVALUATIONS,
        runners={"transformers": {"publish": "aurora_m.hub.variants:run_publish_step"}},
        help="one export folder (weights, model card, plots) per evaluated variant",
    )
)
