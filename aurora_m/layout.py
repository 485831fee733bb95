"""Every path inside a run folder, in one place. No other module spells a run-folder name.

A run folder (``aurora-m run ... --output-dir DIR``)::

    DIR/.aurora-m-run.json      what made this folder ours (recipe name); refused if a folder lacks it
    DIR/.aurora-m.lock          one run at a time (pid of the holder)
    DIR/summary.json            every stage and variant; paths in it are relative to DIR
    DIR/recipe/                 the stage YAMLs as run (secrets redacted)
    DIR/<stage>/                one folder per stage (see StageDir)

The classes take plain folders and names (never a recipe's stage objects), so every layer can use
them. Paths recorded in files are relative to the run folder (:meth:`RunLayout.rel`), so a run
folder can be moved or copied to another machine and still be published.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR
TRAINER_STATE = "trainer_state.json"  # the last file Trainer writes into a checkpoint
TRAINING_ARGS_JSON = "training_args.json"  # a readable, redacted copy of the trainer's arguments, kept with a model
TRAINING_ARGS_PICKLE = "training_args.bin"  # transformers' pickle of them: never kept with a model
# A variant's name: a folder here (eval/<variant>, publish/<variant>) and a Hub repo name (NAMESPACE/VARIANT), so
# no separators, no "..", no "--"
VARIANT_NAME = re.compile(r"^(?![-.])(?!.*(\.\.|--))[A-Za-z0-9._-]{1,96}(?<![-.])$")


class DatasetDir:
    """What a data step writes: a packed (or prompt/completion) dataset and its report."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def mixture_json(self) -> Path:
        return self.root / "mixture.json"

    @property
    def mixture_png(self) -> Path:
        return self.root / "mixture.png"

    @property
    def sources_json(self) -> Path:
        return self.root / "sources.json"

    # ------------------------------------------------------------------ a pretraining corpus (datatrove)
    @property
    def filter_report_json(self) -> Path:
        return self.root / "filter_report.json"

    @property
    def index(self) -> Path:
        """The sampling index: stream position -> (source, window); the stream position is a row of it."""
        return self.root / "index.npy"

    @property
    def tokens(self) -> Path:
        """One folder of datatrove ``.ds`` token shards per source (what nanotron reads too)."""
        return self.root / "tokens"

    def source_tokens(self, source: str) -> Path:
        return self.tokens / source

    @property
    def removed(self) -> Path:
        """Every removed document, by source and by the filter that removed it."""
        return self.root / "removed"

    def removed_by(self, source: str, step: str) -> Path:
        return self.removed / source / step

    @property
    def heldout(self) -> Path:
        """Packed windows of held-out documents, one ``.npy`` per language: the training run's eval sets."""
        return self.root / "heldout"

    def heldout_tokens(self, lang: str) -> Path:
        return self.heldout / f"{lang}.npy"

    def heldout_docs(self, source: str) -> Path:
        """A capped sample of a source's held-out documents, written by cleaning (under ``work``)."""
        return self.work / "heldout" / source

    @property
    def heldout_json(self) -> Path:
        """What the held-out windows are (seq_length, token size, windows and documents per language)."""
        return self.heldout / "heldout.json"

    @property
    def logs(self) -> Path:
        """datatrove's task logs and stats, one folder per phase and source."""
        return self.root / "logs"

    @property
    def work(self) -> Path:
        """Intermediate documents (cleaned, deduplicated) and MinHash files; removed when the build ends."""
        return self.root / "work"

    @property
    def leaks(self) -> Path:
        """Training documents found holding a held-out test prompt, one file per cleaning task."""
        return self.work / "leaks"

    @property
    def build_json(self) -> Path:
        """What a partial build was started for: resumed only for the same keys and input files."""
        return self.root / "build.json"

    @property
    def lock(self) -> Path:
        return self.root / ".build.lock"

    @property
    def partial(self) -> DatasetDir:
        """Where a corpus is built (resumable across kills); renamed to ``root`` when complete."""
        return DatasetDir(self.root.with_name(f".{self.root.name}.partial"))

    def is_built(self) -> bool:
        return self.train.is_dir() or self.index.is_file()


class StageDir:
    """One stage's folder: its dataset, checkpoints, final model, plots, results and step markers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ pretrain / sft
    @property
    def data(self) -> DatasetDir:
        return DatasetDir(self.root / "data")

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def model_partial(self) -> Path:
        return self.root / ".model.partial"

    @property
    def adapter(self) -> Path:
        """A LoRA stage's adapter (PEFT safetensors + adapter_config.json); ``model`` holds it merged."""
        return self.root / "adapter"

    @property
    def adapter_partial(self) -> Path:
        return self.root / ".adapter.partial"

    @property
    def model_previous(self) -> Path:
        """Where the last model waits while a new one is renamed into place."""
        return self.root / ".model.previous"

    @property
    def log_history(self) -> Path:
        return self.root / "log_history.json"

    @property
    def loss_png(self) -> Path:
        return self.root / "loss.png"

    @property
    def curves_png(self) -> Path:
        """Training loss, learning rate and held-out loss per language, redrawn at each save."""
        return self.root / "curves.png"

    @property
    def train_lock(self) -> Path:
        """Held by the training run's main process: one run trains into a stage folder at a time."""
        return self.root / ".train.lock"

    @property
    def eval_lock(self) -> Path:
        """Held by an evaluation's main process: one evaluation writes a stage folder's results at a time."""
        return self.root / ".eval.lock"

    @property
    def script_claim(self) -> Path:
        """Written by a script (scripts/pretrain.py, sft.py, data.py) into its --output_dir: which configuration
        its data, checkpoints and model belong to (a folder without it is not replaced by a script)."""
        return self.root / ".aurora-m-stage.json"

    @property
    def train_state(self) -> Path:
        """Which configuration the checkpoints in this folder belong to."""
        return self.root / ".train-state.json"

    def checkpoints(self) -> list[Path]:
        """``checkpoint-N`` folders, oldest step first."""
        found = [
            p
            for p in self.root.glob(f"{CHECKPOINT_PREFIX}*")
            if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
        ]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))

    def set_aside(self, why: str) -> Path:
        """A new dated folder to move old checkpoints into (never deleted by us)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = self.root / f"set-aside-{why}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        return path

    # ------------------------------------------------------------------ eval
    def results(self, variant: str) -> Path:
        return self.root / variant / "results.json"

    @property
    def all_results(self) -> Path:
        return self.root / "results.json"

    @property
    def perplexity_png(self) -> Path:
        return self.root / "perplexity.png"

    def suite_results(self, variant: str, suite: str) -> Path:
        """One suite's results of one variant (schema: README, "Evaluation results")."""
        results = self.results(variant)
        return results.with_name(suite + results.suffix)  # VARIANT/<suite>.json, beside results.json

    @property
    def results_md(self) -> Path:
        """Every variant's headline numbers as one markdown table."""
        return self.root / "results.md"

    @property
    def forgetting_md(self) -> Path:
        """Code pass@1 and per-language perplexity, variant by variant (stage by stage)."""
        return self.root / "forgetting.md"

    @property
    def forgetting_png(self) -> Path:
        return self.root / "forgetting.png"

    @property
    def safety_transfer_md(self) -> Path:
        """Refusal rate by language by variant: does safety tuning transfer beyond English?"""
        return self.root / "safety_transfer.md"

    @property
    def safety_transfer_png(self) -> Path:
        return self.root / "safety_transfer.png"

    # ------------------------------------------------------------------ publish
    def export(self, variant: str) -> Path:
        return self.root / variant

    # ------------------------------------------------------------------ markers
    def marker(self, step: str) -> Path:
        return self.root / f".{step}.done"


class ExportDir:
    """What a Hub push uploads: weights, tokenizer, README.md card, assets/, plus our marker."""

    MARKER = ".aurora-m-export.json"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    @property
    def assets(self) -> Path:
        return self.root / "assets"

    @property
    def eval_results(self) -> Path:
        return self.root / "eval_results.json"

    @property
    def lineage(self) -> Path:
        return self.root / "aurora_m_lineage.json"

    @property
    def marker(self) -> Path:
        return self.root / self.MARKER

    @staticmethod
    def asset(plot: str, stage: str | None = None) -> str:
        """Relative path of a plot in the export: ``assets/perplexity.png``, ``assets/cap-loss.png``."""
        return f"assets/{stage}-{plot}.png" if stage else f"assets/{plot}.png"


class RunLayout:
    """The run folder as a whole."""

    MARKER = ".aurora-m-run.json"
    RECIPE_COPY = "recipe"
    RESERVED = {RECIPE_COPY: "copy of the recipe"}  # names a stage folder must not take

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def stage(self, name: str) -> StageDir:
        return StageDir(self.root / name)

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def recipe_copy(self) -> Path:
        return self.root / self.RECIPE_COPY

    @property
    def recipe_source(self) -> Path:
        """Where the recipe copied beside it was read from (written with the copy): what publish compares with."""
        return self.recipe_copy / ".recipe-source.json"

    @property
    def lock(self) -> Path:
        return self.root / ".aurora-m.lock"

    @property
    def marker(self) -> Path:
        return self.root / self.MARKER

    @property
    def file_hashes(self) -> Path:
        """Cache of input-file content hashes, keyed by path, size and mtime."""
        return self.root / ".aurora-m-file-hashes.json"

    def rel(self, path: str | Path) -> str:
        """``path`` as recorded in files: relative to the run folder when inside it."""
        path = Path(path)
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, recorded: str | Path | None) -> Path | None:
        """A recorded path back to a real one (relative ones are relative to this run folder)."""
        if recorded is None:
            return None
        path = Path(recorded)
        return path if path.is_absolute() else self.root / path


def owning_folder(path: str | Path, include_self: bool = True) -> tuple[Path, str] | None:
    """(the run folder or export that holds ``path``, "run folder" or "export"), or None: what aurora-m keeps track
    of is written only by the command that owns it."""
    path = Path(path).resolve()
    for folder in [path, *path.parents] if include_self else path.parents:
        for marker, what in ((RunLayout.MARKER, "run folder"), (ExportDir.MARKER, "export")):
            if (folder / marker).is_file():
                return folder, what
    return None
