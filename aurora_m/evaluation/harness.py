"""The ``harness`` suite: lm-eval tasks per language, run in-process on the loaded model.

The recipe names tasks per language (``lm_eval_tasks``); each entry is an lm-eval task, group or tag
name, or ``{task: NAME, num_fewshot: K}`` where one task needs its own shot count (the paper ran
English 8-shot and Hindi / Vietnamese 0-shot). ``lm_eval_num_fewshot`` applies to the plain names
(null: each task's own default). Custom tasks live in ``lm_eval_include_path`` (a folder of lm-eval
task YAMLs). Everything goes through lm-eval's own API: ``TaskManager(include_path=...)``,
``HFLM(pretrained=<the loaded model>, tokenizer=..., batch_size=..., max_length=seq_length)`` and
``simple_evaluate``, once per entry so every result is attributed to the entry that asked for it.
lm-eval's log lines go through this project's logger: its warnings stay warnings, its progress
notes (and the warnings this way of calling it triggers by design) become debug lines.

Result (``VARIANT/harness.json``)::

    {"suite": "harness",
     "lm_eval_version": "0.4.13",
     "limit": null,                          # lm_eval_limit: examples per task (null: all)
     "tasks": {                              # one per entry; a tag, or a group lm-eval does not
       "arc_hi": {                           # aggregate, gives one per task it holds ("part_of")
         "language": "hi",
         "metrics": {"acc": 0.31, "acc_norm": 0.35},   # lm-eval's names; a filter other than
         "stderr": {"acc": 0.01, "acc_norm": 0.01},    # "none" stays as "exact_match,strict-match"
         "main_metric": "acc_norm",          # the first of MAIN_METRICS the task reports
         "n_samples": 1172,                  # examples scored (after lm_eval_limit)
         "num_fewshot": 0}},
     "by_language": {"hi": 0.33}}            # mean of the main metric of the language's tasks

A stderr lm-eval cannot compute is null.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError
from ..extras import install_hint
from ..overrides import did_you_mean

logger = logging.getLogger(__name__)

SUITE = "harness"
KEY = "lm_eval_tasks"
# acc_norm first: the Open LLM Leaderboard and Okapi report it for ARC and HellaSwag; tasks without it
# (MMLU, TruthfulQA mc2, WinoGrande) fall through to acc, generation tasks to exact match, summaries to rouge
MAIN_METRICS = ("acc_norm", "acc", "exact_match", "f1", "rouge2", "bleu")
# what lm-eval warns about because of how this module calls it (a model object, a recipe's shot count)
EXPECTED_WARNINGS = (
    "`pretrained` model kwarg is not of type `str`",
    "Passed an already-initialized model",
    "Custom kwargs can be passed to `--metadata`",
    "Overwriting default num_fewshot",
)


@dataclass(frozen=True)
class TaskRequest:
    language: str
    name: str
    num_fewshot: int | None  # None: the task's own default
    key: str  # where the recipe names it, for error messages


def requested_tasks(lm_eval_tasks, file, default_fewshot: int | None = None) -> list[TaskRequest]:
    """The recipe's ``lm_eval_tasks`` as requests, or a one-line RecipeError naming the entry at fault."""
    if not isinstance(lm_eval_tasks, dict):
        raise RecipeError(file, KEY, "expected a mapping of language -> list of lm-eval task names")
    requests, seen = [], {}
    for language, entries in lm_eval_tasks.items():
        where = f"{KEY}.{language}"
        if not isinstance(language, str) or not language:
            raise RecipeError(file, KEY, f"{language!r} is not a language name")
        if not isinstance(entries, list) or not entries:
            raise RecipeError(file, where, "expected a non-empty list of lm-eval task names")
        for i, entry in enumerate(entries):
            at = f"{where}[{i}]"
            name, shots = entry, default_fewshot
            if isinstance(entry, dict):
                unknown = set(entry) - {"task", "num_fewshot"}
                if unknown or "task" not in entry:
                    raise RecipeError(
                        file,
                        at,
                        f"expected a task name or {{task: NAME, num_fewshot: K}}, got keys {sorted(map(str, entry))}",
                    )
                name, shots = entry["task"], entry.get("num_fewshot", default_fewshot)
                if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
                    raise RecipeError(file, f"{at}.num_fewshot", f"expected an integer >= 0, got {shots!r}")
            if not isinstance(name, str) or not name.strip():
                raise RecipeError(file, at, f"expected an lm-eval task name, got {name!r}")
            if name in seen:
                raise RecipeError(file, at, f"{name!r} is already listed at {seen[name]}: name each task once")
            seen[name] = at
            requests.append(TaskRequest(language, name, shots, where))
    return requests


def include_folder(eval_args, config_file) -> Path | None:
    """``lm_eval_include_path`` as a folder (relative paths: to the stage YAML's folder)."""
    if not eval_args.lm_eval_include_path:
        return None
    folder = Path(eval_args.lm_eval_include_path).expanduser()
    if not folder.is_absolute():
        folder = Path(config_file).parent / folder
    if not folder.is_dir():
        raise RecipeError(config_file, "lm_eval_include_path", f"{eval_args.lm_eval_include_path} is not a folder")
    return folder.resolve()


def _import_lm_eval(config_file):
    try:
        import lm_eval
    except ImportError:
        raise RecipeError(
            config_file,
            "suites",
            f"the harness suite needs lm-eval, which is not installed here: {install_hint('eval', 'lm-eval')}",
        ) from None
    return lm_eval


def task_manager(eval_args, config_file, cache: dict | None = None):
    """lm-eval's TaskManager over its own tasks and the include folder (indexing them takes seconds: ``cache``
    keeps one per folder across the variants of a stage)."""
    _import_lm_eval(config_file)
    from lm_eval.tasks import TaskManager

    folder = include_folder(eval_args, config_file)
    cache = {} if cache is None else cache
    key = ("lm_eval.TaskManager", str(folder))
    if key not in cache:
        with lm_eval_logs():
            cache[key] = TaskManager(include_path=str(folder) if folder else None)
    return cache[key]


def check_tasks(eval_args, config_file, cache: dict | None = None) -> list[TaskRequest]:
    """The requests, every name known to lm-eval or the include folder: call it before loading models, so a typo
    costs seconds, not a suite."""
    requests = requested_tasks(eval_args.lm_eval_tasks, config_file, eval_args.lm_eval_num_fewshot)
    if not requests:
        raise RecipeError(config_file, KEY, "empty: the harness suite needs lm-eval tasks per language")
    known = set(task_manager(eval_args, config_file, cache).all_tasks)
    for request in requests:
        if request.name not in known:
            hint = did_you_mean(request.name, known)
            raise RecipeError(
                config_file,
                request.key,
                f"unknown lm-eval task {request.name!r}{hint}; custom tasks "
                f"go in a folder named by lm_eval_include_path",
            )
    return requests


def run_harness(model, tokenizer, eval_args, config_file, **context) -> dict:
    """Every requested lm-eval task on ``model``; the result schema is in the module docstring."""
    lm_eval = _import_lm_eval(config_file)
    from lm_eval.models.huggingface import HFLM

    cache = context.get("cache")
    cache = {} if cache is None else cache  # one TaskManager for the check and the run
    requests = check_tasks(eval_args, config_file, cache)
    manager = task_manager(eval_args, config_file, cache)
    tasks = {}
    with lm_eval_logs():
        lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=eval_args.lm_eval_batch_size,
            max_length=eval_args.seq_length,
        )
        for request in requests:
            # log_samples=False: per-example records would grow with the benchmark (MMLU: 14k rows x choices)
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=[request.name],
                num_fewshot=request.num_fewshot,
                limit=eval_args.lm_eval_limit,
                task_manager=manager,
                log_samples=False,
            )
            for name, entry in task_entries(out, request).items():
                tasks[name] = entry
                logger.info(
                    "harness %s %s: %s %s (%d examples, %s-shot)",
                    request.language,
                    name,
                    entry["main_metric"],
                    _shown(entry["metrics"].get(entry["main_metric"])),
                    entry["n_samples"],
                    entry["num_fewshot"],
                )
    return {
        "suite": SUITE,
        "lm_eval_version": lm_eval.__version__,
        "limit": eval_args.lm_eval_limit,
        "tasks": tasks,
        "by_language": by_language(tasks),
    }


# ----------------------------------------------------------------------------- lm-eval's output
def task_entries(out: dict, request: TaskRequest) -> dict[str, dict]:
    """One entry for the request's name when lm-eval scored it as a whole (a task, an aggregated group), else
    one per task it holds."""
    results, counts, shots = out["results"], out.get("n-samples", {}), out.get("n-shot", {})
    row = results.get(request.name, {})
    if _metrics(row)[0]:
        total = sum(int(c["effective"]) for c in counts.values())
        used = {shots[t] for t in counts if t in shots}
        k = shots.get(request.name, used.pop() if len(used) == 1 else request.num_fewshot)
        return {request.name: _entry(request.language, row, total, k)}
    return {
        name: {
            **_entry(
                request.language, results[name], int(counts[name]["effective"]), shots.get(name, request.num_fewshot)
            ),
            "part_of": request.name,
        }
        for name in counts
        if _metrics(results.get(name, {}))[0]
    }


def _entry(language: str, row: dict, n_samples: int, num_fewshot) -> dict:
    metrics, stderr = _metrics(row)
    return {
        "language": language,
        "metrics": metrics,
        "stderr": stderr,
        "main_metric": main_metric(metrics),
        "n_samples": n_samples,
        "num_fewshot": num_fewshot,
    }


def _metrics(row: dict) -> tuple[dict, dict]:
    """lm-eval's ``"acc,none": 0.3, "acc_stderr,none": 0.01`` as ``{"acc": 0.3}``, ``{"acc": 0.01}``."""
    metrics, stderr = {}, {}
    for key, value in row.items():
        metric, sep, filt = key.partition(",")
        if not sep:  # alias, name, sample_len
            continue
        target = metrics
        if metric.endswith("_stderr"):
            metric, target = metric[: -len("_stderr")], stderr
        target[metric if filt == "none" else f"{metric},{filt}"] = _number(value)
    return metrics, stderr


def _number(value) -> float | None:
    """lm-eval writes "N/A" for a stderr it skipped; JSON has no NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def main_metric(metrics: dict) -> str | None:
    for preferred in MAIN_METRICS:
        for name in metrics:
            if name.partition(",")[0] == preferred:
                return name
    return next(iter(metrics), None)


def by_language(tasks: dict[str, dict]) -> dict[str, float | None]:
    scores: dict[str, list[float]] = {}
    for entry in tasks.values():
        value = entry["metrics"].get(entry["main_metric"])
        scores.setdefault(entry["language"], [])
        if value is not None:
            scores[entry["language"]].append(value)
    return {language: (sum(v) / len(v) if v else None) for language, v in scores.items()}


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# ----------------------------------------------------------------------------- logs
class _ThroughOurLogger(logging.Handler):
    """Hands lm-eval's records to this project's logger: progress notes and expected warnings as debug."""

    def __init__(self, target: logging.Logger):
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING or (
            record.levelno == logging.WARNING and any(w in record.getMessage() for w in EXPECTED_WARNINGS)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


@contextmanager
def lm_eval_logs():
    """While lm-eval runs, its logger (``lm_eval``) writes through ours, and only that; restored afterwards."""
    source = logging.getLogger("lm_eval")
    saved = source.level, source.propagate, list(source.handlers)
    source.handlers = [_ThroughOurLogger(logger)]
    source.propagate = False
    source.setLevel(logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.WARNING)
    try:
        yield
    finally:
        source.setLevel(saved[0])
        source.propagate = saved[1]
        source.handlers = saved[2]


def check_harness_keys(stage) -> None:
    """The harness suite's keys: entries well formed, the include folder there. Task names are checked when the
    stage starts (:func:`check_tasks`): indexing lm-eval's thousands of task YAMLs takes seconds."""
    config = stage.config
    requested_tasks(config.get("lm_eval_tasks") or {}, stage.file)
    if config.get("lm_eval_include_path"):
        stage.local("lm_eval_include_path", config["lm_eval_include_path"], folder=True)
    if "harness" in (config.get("suites") or []) and not config.get("lm_eval_tasks"):
        raise RecipeError(stage.file, "lm_eval_tasks", "missing: the harness suite needs lm-eval tasks per language")
