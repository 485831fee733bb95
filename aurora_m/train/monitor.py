"""Watching a pretraining run: held-out loss per language, a forgetting monitor, and the curves as a PNG.

- :func:`heldout_eval_sets`: the data step's held-out windows (``heldout/<lang>.npy``) as one eval set per
  language for ``Trainer(eval_dataset=...)``; transformers evaluates each and logs ``eval_<lang>_loss``
  when ``eval_strategy`` / ``eval_steps`` say (``eval_on_start: true`` gives step 0).
- :class:`ForgettingMonitor`: after each evaluation round, the probes named by ``forgetting_probes``
  (:data:`PROBES`; ``code_ppl`` now) are logged as ``forgetting/<probe>`` and ``forgetting/<probe>_ratio``
  (to the first value) through ``Trainer.log``, so log_history and every ``report_to`` integration get
  them, and a warning goes out when a probe is worse than ``forgetting_threshold`` times its first value.
  The first value is read back from log_history, which checkpoints keep: a resumed run keeps its baseline.
- :class:`CurvesPlot`: ``curves.png`` in the stage folder at each save and at the end (main process).
- :class:`EvaluationKeepsTrainingRandomness`: a run with evaluation trains the very same weights as without.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from ..args import MixtureArguments
from ..errors import RecipeError
from ..io import read_json_or_none
from ..languages import language_order
from ..layout import DatasetDir, StageDir
from ..plots import plot_curves

logger = logging.getLogger(__name__)
PREFIX = "forgetting/"


# ----------------------------------------------------------------------------- held-out eval sets
class HeldOutWindows(torch.utils.data.Dataset):
    """One language's held-out windows, items shaped like the training stream's (``{"input_ids": ...}``).

    Held whole in memory: ``heldout_blocks`` x ``seq_length`` tokens, whatever the corpus size.
    """

    def __init__(self, path: str | Path, seq_length: int):
        if not Path(path).is_file():
            raise RecipeError(path, None, "missing, though the held-out note lists it: run the data step again")
        try:
            windows = np.load(path, allow_pickle=False)
        except Exception as err:  # noqa: BLE001 - any failure to read means the file is damaged
            raise RecipeError(
                path, None, f"unreadable ({type(err).__name__}: truncated or corrupt): run the data step again"
            ) from None
        if windows.dtype.kind != "u":
            raise RecipeError(path, None, f"holds {windows.dtype} values, not token ids: run the data step again")
        if windows.ndim != 2 or windows.shape[1] != seq_length:
            raise RecipeError(
                path, None, f"holds windows of shape {windows.shape}, not (n, {seq_length}): run the data step again"
            )
        self.windows = torch.from_numpy(windows.astype(np.int64))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.windows[i]}


def heldout_eval_sets(data: DatasetDir, args=None) -> dict[str, HeldOutWindows] | None:
    """language -> its held-out windows, in ``language_order`` (the paper's five first, then the others); None
    when the data step wrote none (a folder built before held-out monitoring, ``heldout_blocks: 0``, nothing held
    out).

    With ``args`` (TrainingArguments), evaluation is switched off there when there is nothing to evaluate:
    Trainer refuses an ``eval_strategy`` without an eval set, and an old data folder must still train. And
    ``eval_strategy: no`` (``--eval_strategy no``, say) means no evaluation at all, the recipe's
    ``eval_on_start`` included: None.
    """
    if args is not None and args.eval_strategy == IntervalStrategy.NO:
        if args.eval_on_start:
            args.eval_on_start = False
            logger.info("eval_strategy: no: no held-out loss during training (eval_on_start is off too)")
        return None
    meta = read_json_or_none(data.heldout_json)
    found = (meta or {}).get("languages", {})
    sets = {
        lang: HeldOutWindows(data.heldout_tokens(lang), int(meta["seq_length"]))
        for lang in language_order(found)
        if found.get(lang, {}).get("windows", 0) > 0
    }
    if sets:
        logger.info(
            "held-out loss during training on %s windows of %d tokens",
            ", ".join(f"{lang} {len(ds)}" for lang, ds in sets.items()),
            int(meta["seq_length"]),
        )
        if missing := [lang for lang in language_order(found) if lang not in sets]:
            logger.info("no held-out windows for %s", ", ".join(missing))
        return sets
    why = "held-out windows are empty" if meta else "it has no held-out windows (built before held-out monitoring?)"
    logger.info("no held-out loss or forgetting monitor: %s in %s", why, data.root)
    if args is not None:
        args.eval_strategy, args.eval_on_start = IntervalStrategy.NO, False
        logger.info("evaluation during training is off (eval_strategy: no)")
    return None


# ----------------------------------------------------------------------------- forgetting probes
@dataclass(frozen=True)
class Probe:
    """One measure of what the base model knew. ``measure(trainer, metrics)`` gets the metrics of one
    evaluation round (``eval_<lang>_loss``, ...) and returns a number, or None when it cannot measure."""

    name: str
    measure: Callable[[object, dict], float | None]
    higher_is_worse: bool = True
    help: str = ""


PROBES: dict[str, Probe] = {}


def register_probe(probe: Probe) -> Probe:
    """Add a probe that recipes can name in ``forgetting_probes`` (the evaluation's HumanEval pass@1, say)."""
    PROBES[probe.name] = probe
    return probe


def _code_perplexity(trainer, metrics: dict) -> float | None:
    loss = metrics.get("eval_code_loss")
    return math.exp(loss) if loss is not None else None


register_probe(Probe("code_ppl", _code_perplexity, higher_is_worse=True, help="perplexity of held-out code"))

HUMANEVAL_PROBE_PROBLEMS = 16  # the first 16 HumanEval problems: ~1 s of generation per problem on a GPU
HUMANEVAL_PROBE_TOKENS = 128


def _humaneval_pass1(trainer, metrics: dict) -> float | None:
    """Greedy pass@1 on a HumanEval subset, the programs graded in the evaluation's sandbox (main process; under
    FSDP / ZeRO-3 a single rank cannot generate from sharded weights, so the probe reports nothing there)."""
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled or not trainer.is_world_process_zero():
        return None
    from ..evaluation.code.problems import humaneval_problems, program_for
    from ..evaluation.code.sandbox import Job, LocalSandbox
    from ..evaluation.generation import generate

    problems = humaneval_problems()[:HUMANEVAL_PROBE_PROBLEMS]
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    try:
        completions = generate(
            model,
            trainer.processing_class,
            [p.prompt for p in problems],
            max_new_tokens=HUMANEVAL_PROBE_TOKENS,
            stop=problems[0].stop,
            batch_size=trainer.args.per_device_eval_batch_size,
            desc="humaneval probe",
        )
    finally:
        model.train(was_training)
    outcomes = LocalSandbox().run([Job(program_for(p, c[0]), timeout_s=5.0) for p, c in zip(problems, completions)])
    return sum(o.passed for o in outcomes) / len(outcomes)


register_probe(
    Probe(
        "humaneval_pass1",
        _humaneval_pass1,
        higher_is_worse=False,
        help=f"greedy pass@1 on the first {HUMANEVAL_PROBE_PROBLEMS} HumanEval problems, in the sandbox "
        "(needs AURORA_M_ALLOW_CODE_EXECUTION=1)",
    )
)


class ForgettingMonitor(TrainerCallback):
    """Logs each probe and its ratio to its first value after every evaluation round; warns past a threshold.

    A round is complete when every eval set has reported (Trainer evaluates a dict of sets one by one, each
    with its own ``on_evaluate``). Takes the trainer, as trl's callbacks do, to log through ``Trainer.log``:
    the eval metrics are logged before ``on_evaluate`` runs, so only a log call of our own reaches log_history
    and the ``report_to`` integrations.
    """

    def __init__(self, trainer, probes: list[str], threshold: float):
        self.trainer = trainer
        self.probes = [PROBES[name] for name in probes]
        self.threshold = threshold
        self.baselines: dict[str, float] = {}
        self._round: dict = {}

    def _round_complete(self) -> bool:
        sets = self.trainer.eval_dataset
        names = list(sets) if isinstance(sets, dict) else []
        return all(f"eval_{name}_loss" in self._round for name in names)

    def _baseline(self, key: str, state, value: float) -> float:
        if key not in self.baselines:  # a resumed run finds its first value in the restored log_history
            self.baselines[key] = next((e[key] for e in state.log_history if key in e), value)
        return self.baselines[key]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._round.update(metrics or {})
        if not self._round_complete():
            return
        metrics, self._round = self._round, {}
        logs = {}
        for probe in self.probes:
            value = probe.measure(self.trainer, metrics)
            if value is None:
                continue
            key = PREFIX + probe.name
            baseline = self._baseline(key, state, value)
            ratio = value / baseline if baseline else (1.0 if value == baseline else math.inf)  # 0 -> 0: unchanged
            logs[key], logs[f"{key}_ratio"] = value, ratio
            worse = ratio if probe.higher_is_worse else (1 / ratio if ratio else math.inf)
            if worse > self.threshold and state.is_world_process_zero:
                logger.warning(
                    "forgetting: %s is %.4g at step %d, %.3gx worse than its first value %.4g "
                    "(forgetting_threshold %.3g)",
                    probe.name,
                    value,
                    state.global_step,
                    worse,
                    baseline,
                    self.threshold,
                )
        if logs:
            self.trainer.log(logs)


# ----------------------------------------------------------------------------- curves
class CurvesPlot(TrainerCallback):
    """``curves.png``: training loss, learning rate, held-out loss per language, forgetting ratios."""

    def __init__(self, path: str | Path, title: str):
        self.path, self.title = Path(path), title

    def _draw(self, state) -> None:
        if state.is_world_process_zero:
            plot_curves(state.log_history, self.path, self.title)

    def on_save(self, args, state, control, **kwargs):
        self._draw(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(state)


class EvaluationKeepsTrainingRandomness(TrainerCallback):
    """Evaluation draws from torch's global generators (each DataLoader iterator takes a base seed from the CPU
    one; a sampling probe would draw more), and training's dropout draws from them next: the state before an
    evaluation round is put back after each of its evaluations, so eval_steps never changes the trained weights.
    Added last, so it runs after the forgetting probes."""

    def __init__(self):
        self.saved = None

    def _save(self) -> None:
        self.saved = (
            torch.random.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self._save()  # eval_on_start comes next

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_evaluate:  # set by transformers' flow callback, which runs before ours
            self._save()

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_evaluate:
            self._save()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.saved is not None:
            cpu, cuda = self.saved
            torch.random.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)


def monitor_callbacks(
    trainer,
    dirs: StageDir,
    mix_args: MixtureArguments,
    title: str = "pretraining",
    config_file: str | Path = "<stage config>",
) -> list[TrainerCallback]:
    """The stage's monitors for ``trainer`` (add each with ``trainer.add_callback``, in this order): with held-out
    eval sets the forgetting monitor, the curves always, and with eval sets the guard that keeps evaluation
    from changing training's random draws."""
    unknown = [name for name in mix_args.forgetting_probes if name not in PROBES]
    if unknown:
        raise RecipeError(
            config_file, "forgetting_probes", f"unknown probe {unknown[0]!r} (known: {', '.join(sorted(PROBES))})"
        )
    if not mix_args.forgetting_threshold > 0:
        raise RecipeError(
            config_file,
            "forgetting_threshold",
            f"expected a positive factor (1.2: warn at 20% worse), got {mix_args.forgetting_threshold!r}",
        )
    if "humaneval_pass1" in mix_args.forgetting_probes:
        from ..evaluation.code.sandbox import require_opt_in

        require_opt_in()  # before training, not at the first evaluation
    callbacks: list[TrainerCallback] = []
    if isinstance(trainer.eval_dataset, dict) and mix_args.forgetting_probes:
        callbacks.append(ForgettingMonitor(trainer, list(mix_args.forgetting_probes), mix_args.forgetting_threshold))
    callbacks.append(CurvesPlot(dirs.curves_png, title))
    if trainer.eval_dataset is not None:
        callbacks.append(EvaluationKeepsTrainingRandomness())
    return callbacks
