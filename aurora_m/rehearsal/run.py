"""``aurora-m rehearse``: a real recipe's every stage, run in miniature on a CPU before a cluster run.

Every stage is checked as ``aurora-m validate`` checks it (the launch included); then every source of every
stage is read as the stage reads it (:mod:`.sources`: same builder, config, files, split and columns, streamed,
its first rows only) and each pretraining source's documents go through the stage's own cleaning chain
(``data.clean_pipeline``) on that real text. Then, unless ``checks_only``, the recipe is rewritten into its
miniature (:mod:`.miniature`: its own model config chain shrunk, one scale factor on the budgets, the first rows
of each source) and every stage runs through the real pipeline (:mod:`.mini_run`). Offline (``HF_HUB_OFFLINE=1``,
or ``--recorded-hub``) the sources come from the recorded Hub (:mod:`.hub`). The first source, stage or step that
fails stops the rehearsal with one line naming it; the report (``rehearsal.json``, ``rehearsal.md``) says what
each stage and source did and what the full run would read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path

from huggingface_hub.constants import REPOCARD_NAME

from ..errors import RecipeError
from ..io import write_json, write_text
from ..roots import resolve_path
from .report import full_size_costs, render_table

logger = logging.getLogger(__name__)

MARKER = ".aurora-m-rehearsal.json"
LOCK = ".aurora-m-rehearsal.lock"
# what a rehearsal writes in its folder, besides one folder per stage (the cleaning chains')
OWN = (
    "rehearsal.json",
    "rehearsal.md",
    "sample",
    "sample-tokenizer",
    "hub-cache",
    "miniature",
    "run",
    "miniature.log",
    "publish-dry-run",
)
SAMPLE_TOKENIZER = "sample-tokenizer"  # a folder of the rehearsal's output
TOKENIZER_VOCAB = 2048  # trained on the sampled text when the recipe's own tokenizer is not reachable


def offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_HUB_OFFLINE",))


def rehearse(
    recipe_dir,
    output_dir,
    *,
    sample_mb: float = 1.0,
    rows: int = 200,
    recorded: bool | None = None,
    launches: list[str] | None = None,
    checks_only: bool = False,
) -> dict:
    """Rehearse ``recipe_dir`` into ``output_dir``; returns the report (also written as rehearsal.json).
    ``launches``: ``[STAGE=]CONFIG`` accelerate configs (as ``validate --accelerate-config``); by default the ones
    the recipe's README launches each stage with."""
    from ..locking import run_lock

    out = _claim(Path(output_dir))
    with run_lock(out / LOCK, "aurora-m rehearse"):  # one rehearsal per folder: a second would delete the first's
        _start_over(out)
        return _rehearse(recipe_dir, out, sample_mb, rows, recorded, launches, checks_only)


def _rehearse(recipe_dir, out: Path, sample_mb, rows, recorded, launches, checks_only) -> dict:
    from ..recipe import load_recipe

    recorded = offline() if recorded is None else recorded
    report = {
        "recipe": str(recipe_dir),
        "hub": "recorded (aurora_m/rehearsal/recorded_hub)" if recorded else "live",
        "sample": {"rows_per_source": rows, "mb_per_source": sample_mb},
        "stages": [],
        "sources": [],
    }
    try:
        recipe = load_recipe(recipe_dir)
        _remember(out, [stage.name for stage in recipe.stages])  # the cleaning chains' folders are named so
    except RecipeError as err:  # the recipe's own checks (keys, sources, script repos read by id): no stage ran
        report["refused"] = str(err)
        write_json(out / "rehearsal.json", report)
        write_text(out / "rehearsal.md", render_table(report))
        raise
    hub_context = _recorded(out) if recorded else contextlib.nullcontext(None)
    failure = None
    try:
        with hub_context as hub:
            try:
                _validate(recipe, report, launches)
                samples = _read_all(recipe, report, out, rows, int(sample_mb * 2**20), hub)
                tokenizer_file = _tokenizer(samples, out, report)
                _clean_all(recipe, report, samples, out, tokenizer_file, rows)
                report["full_size"] = full_size_costs(report, hub)
                if not checks_only:
                    if hub is not None:  # the read phase's bytes; the total below adds the miniature's own reads
                        report["bytes_served_reading"] = dict(sorted(hub.bytes_served.items()))
                    _miniature(recipe, report, out, rows, recorded, samples)
            finally:
                if hub is not None:  # what the recorded Hub served, per repo: bounded whatever the corpus size
                    report["bytes_served_per_repo"] = dict(sorted(hub.bytes_served.items()))
    except RecipeError as err:
        failure = err
        report["refused"] = str(err)
        for entry in report["stages"]:
            if entry["status"] in ("started", "checked"):
                entry["status"] = "not reached"
    write_json(out / "rehearsal.json", report)
    write_text(out / "rehearsal.md", render_table(report))
    if failure is not None:
        raise failure
    return report


def _claim(out: Path) -> Path:
    """The output folder: new, or one an earlier rehearsal wrote (never a folder of someone else's)."""
    if out.exists() and not out.is_dir():
        raise RecipeError(out, None, "is a file, not a folder: choose a new folder for --output-dir")
    try:
        if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise RecipeError(out, None, "is not empty and was not written by aurora-m rehearse: choose a new folder")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, on a read-only or pseudo file system, no permission
        raise RecipeError(out, None, f"cannot be used as the output folder ({err.strerror}): choose another") from None
    if not (out / MARKER).is_file():
        write_json(out / MARKER, {"written_by": "aurora-m rehearse", "entries": []})
    return out


def _entries(out: Path) -> list[str]:
    from ..io import read_json_or_none

    marker = read_json_or_none(out / MARKER) or {}
    return [
        str(e) for e in marker.get("entries", []) if isinstance(e, str) and "/" not in e and e not in ("", ".", "..")
    ]


def _remember(out: Path, names: list[str]) -> None:
    """Add ``names`` to what this folder holds of ours (the marker lists it before anything is written there, so
    a rehearsal killed midway still leaves a list of what the next one clears)."""
    entries = sorted({*_entries(out), *OWN, *names})
    write_json(out / MARKER, {"written_by": "aurora-m rehearse", "entries": entries})


def _start_over(out: Path) -> None:
    """A rehearsal starts from nothing: what an earlier one (finished, killed or of another recipe) left would
    otherwise be read as this one's (its report, its leak files, its tokenizer). Only what the marker lists as
    ours goes; anything else a user put in the folder stays."""
    import shutil

    _remember(out, [])
    for name in _entries(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@contextlib.contextmanager
def _recorded(out: Path):
    from .hub import RecordedHub

    with RecordedHub(cache_dir=out / "hub-cache") as hub:
        yield hub


def _stage_entry(report: dict, stage) -> dict:
    for entry in report["stages"]:
        if entry["name"] == stage.name:
            return entry
    entry = {"name": stage.name, "kind": stage.kind, "status": "started", "steps": {}}
    report["stages"].append(entry)
    return entry


def readme_launches(recipe) -> list[str]:
    """``STAGE=CONFIG`` for each ``recipes/launch.slurm SCRIPT <recipe>/<stage>.yaml OUT CONFIG`` line of the
    recipe's README: the accelerate config each stage is documented to launch with."""
    readme = recipe.dir / REPOCARD_NAME  # a recipe folder's README, named as a Hub repo's
    if not readme.is_file():
        return []
    by_file = {s.config.name: s.name for s in recipe.stages}
    found = {}
    for match in re.finditer(
        r"launch\.slurm\s+\w+\s+\S*?([\w.-]+\.yaml)\s+\S+\s+([\w./-]+)", readme.read_text().replace("\\\n", " ")
    ):
        if match.group(1) in by_file:
            found[by_file[match.group(1)]] = match.group(2)
    return [f"{stage}={config}" for stage, config in found.items()]


def _validate(recipe, report: dict, launches: list[str] | None) -> None:
    """The launch as ``aurora-m validate`` checks it, stage by stage (the first refusal stops everything)."""
    from ..extras import check_launches
    from ..recipe import check_engines
    from ..stage_checks import parse_stage

    check_engines(recipe)
    launches = readme_launches(recipe) if launches is None else launches
    report["launches"] = launches
    try:
        check_launches([(s.name, s.config) for s in recipe.stages], launches)
    except RecipeError as err:
        stage = next((s for s in recipe.stages if str(s.config) == err.file), recipe.stages[0])
        _stage_entry(report, stage).update(status="refused", reason=f"launch: {err.message}")
        raise RecipeError(
            err.file, err.key, f"stage {stage.name}, launch {', '.join(launches)}: {err.message}"
        ) from err
    for stage in recipe.stages:
        entry = _stage_entry(report, stage)
        try:
            parse_stage(
                stage.config,
                stage.kind,
                validate_only=True,
                has_model_input=bool(stage.inputs),
                input_positions=recipe.input_positions(stage),
                engine=stage.engine,
            )
        except RecipeError as err:
            entry["status"] = "refused"
            entry["reason"] = str(err)
            raise
        entry["steps"]["validate"] = "completed"


def _stage_sources(stage) -> list[tuple[str, list]]:
    from ..overrides import read_yaml
    from ..source_spec import source_specs
    from ..stage_checks import source_list_keys

    config = read_yaml(stage.config) or {}
    lists = []
    for key in source_list_keys():
        if config.get(key):
            lists.append((key, source_specs(_resolved(config[key], stage.config.parent), key, stage.config)))
    return lists


def _resolved(entries, folder: Path):
    """Local paths relative to the stage YAML's folder, as the stage's parser resolves them."""
    one = isinstance(entries, dict)
    out = [
        {**e, "path": str(resolve_path(folder, e["path"]))} if isinstance(e, dict) and e.get("path") else e
        for e in ([entries] if one else entries)
    ]
    return out[0] if one else out


def _read_all(recipe, report: dict, out: Path, rows: int, max_bytes: int, hub) -> dict:
    """Every source of every stage, read in order; the first that cannot be read stops the rehearsal."""
    from .sources import sample_source

    samples = {}
    for stage in recipe.stages:
        entry = _stage_entry(report, stage)
        count = 0
        for key, specs in _stage_sources(stage):
            for i, spec in enumerate(specs):
                where = f"{key}[{i}]" if key != "mbpp_source" else key
                logger.info("rehearse %s: read %s %s", stage.name, where, spec.dataset or spec.path)
                try:
                    if hub is not None and spec.dataset and spec.dataset not in hub.repos:
                        # offline, the Hub is what was recorded: a real repo the snapshots lack is not a typo
                        raise RecipeError(
                            stage.config,
                            f"{where}.dataset",
                            f"{spec.dataset} is not in the recorded Hub (aurora_m/rehearsal/recorded_hub/, "
                            f"{len(hub.repos)} repos): rehearse it online (HF_HUB_OFFLINE unset), or record it there",
                        )
                    sample = sample_source(spec, stage.name, key, stage.config, where, rows, max_bytes, hub)
                except RecipeError as err:
                    entry["status"] = "refused"
                    entry["reason"] = f"source {spec.name} ({spec.dataset or spec.path}): {err.message}"
                    raise RecipeError(
                        err.file, err.key, f"stage {stage.name}, source {spec.name}: {err.message}"
                    ) from err
                samples[(stage.name, key, spec.name)] = (spec, sample)
                report["sources"].append(sample.report())
                count += 1
        entry["steps"]["read_sources"] = f"completed ({count} sources)"
    (out / "sample").mkdir(exist_ok=True)
    with open(out / "sample" / "texts.jsonl", "w", encoding="utf-8") as fh:
        for _, sample in samples.values():
            for text in sample.texts:
                fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return samples


def _tokenizer(samples: dict, out: Path, report: dict) -> str:
    """A byte-level BPE trained on the sampled text (the real tokenizer is gated and not recorded)."""
    from ..tokenizer import train_tokenizer

    target = out / SAMPLE_TOKENIZER
    if not (target / "tokenizer.json").is_file():
        train_tokenizer([str(out / "sample" / "texts.jsonl")], TOKENIZER_VOCAB, target)
    report["tokenizer"] = (
        f"byte-level BPE, vocab {TOKENIZER_VOCAB}, trained on the sampled text (bytes per token: ours)"
    )
    return str(target / "tokenizer.json")


def _miniature(recipe, report: dict, out: Path, rows: int, recorded: bool, samples: dict) -> None:
    """Every stage again, in miniature, through the real pipeline (:mod:`.miniature`, :mod:`.mini_run`)."""
    from .mini_run import run_miniature
    from .miniature import build_miniature

    for entry in report["stages"]:
        entry["status"] = "started"
    try:
        mini = build_miniature(recipe, out, rows, recorded, report, samples)
    except RecipeError as err:  # a stage the miniature cannot be made of (an lm-eval task lm-eval does not know)
        for entry in report["stages"]:
            if err.message.startswith(f"stage {entry['name']}:"):
                entry.update(status="refused", reason=err.message)
        raise
    run_miniature(recipe, mini, out, report, _stage_entry)


def _clean_all(recipe, report: dict, samples: dict, out: Path, tokenizer_file: str, rows: int) -> None:
    """Each pretraining stage's cleaning chain on each of its mixture sources' first rows."""
    from .cleaning import clean_sample

    by_name = {(s["stage"], s["key"], s["name"]): s for s in report["sources"]}
    for stage in recipe.stages:
        if stage.kind != "pretrain":
            continue
        entry = _stage_entry(report, stage)
        started = time.monotonic()
        results = clean_sample(stage, samples, out / stage.name, tokenizer_file, rows, recipe.input_positions(stage))
        for name, result in results.items():
            by_name[(stage.name, "mixture", name)].update(result)
        entry["steps"]["clean"] = f"completed ({len(results)} sources, {time.monotonic() - started:.1f} s)"
    for entry in report["stages"]:
        if entry["status"] == "started":
            # validated and read (and cleaned, for pretraining): not trained, evaluated or published in miniature
            # yet, so not "completed"
            entry["status"] = "checked"
