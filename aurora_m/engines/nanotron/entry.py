"""What ``torchrun`` starts on every GPU of a nanotron stage: nanotron's ``run_train.py`` with our model.

    torchrun --nproc_per_node=8 -m aurora_m.engines.nanotron.entry --config-file RUN/cap/nanotron.yaml \
        --tokenizer RUN/cap/data/tokenizer

``DistributedTrainer`` gets the GPTBigCode model through its model-class hook and reads the YAML with a
``Config`` whose ``model_config`` is our GPTBigCodeConfig (:mod:`.model`). The data stages come from upstream's
``run_train.py`` (found beside the installed package of a source install, or ``--run-train``), unchanged but for
two things: its tokenizer is the data step's folder (the shards' ``.metadata`` names the tokenizer file the
data step used while building), and the learning rate follows this config's schedule even when the optimizer
and scheduler state come from the upstream stage (``init_from: full_state``: the step count carries on, the
rates are this stage's, as in the transformers engine).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from ...errors import RecipeError, exit_on_failure
from . import INSTALL, require_nanotron

logger = logging.getLogger(__name__)


def load_run_train(path: str | None):
    nanotron = require_nanotron()
    candidate = Path(path) if path else Path(nanotron.__file__).resolve().parents[2] / "run_train.py"
    if not candidate.is_file():
        raise RecipeError(None, "--run-train", f"{candidate} not found: nanotron's run_train.py comes with its source "
                                               f"checkout ({INSTALL}); give its path with --run-train")
    spec = importlib.util.spec_from_file_location("nanotron_run_train", candidate)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its __main__ block does not run: the name is not "__main__"
    return module


class _DataStepTokenizer:
    """``AutoTokenizer`` for run_train.py: the data step's tokenizer folder, whatever name the config holds."""

    def __init__(self, folder: str):
        self.folder = folder

    def from_pretrained(self, _name, *args, **kwargs):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder, *args, **kwargs)


def follow_this_schedule(trainer) -> None:
    """Learning rate = this config's schedule at the global step, whatever base rate a loaded state held."""
    scheduler = trainer.lr_scheduler
    initial = [lam.keywords["initial_lr"] for lam in scheduler.lr_lambdas]
    scheduler.base_lrs = initial
    for group, lr, lam in zip(scheduler.optimizer.param_groups, initial, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * lam(scheduler.last_epoch)


def check_stage_engine(recipe_dir: str, stage_name: str) -> None:
    """A launch of nanotron on every node is for a stage that trains on nanotron (not, say, an SFT stage that
    would then run as one process on the first node)."""
    from ...recipe import load_recipe

    recipe = load_recipe(recipe_dir, check_stages=False)
    stage = recipe.stage(stage_name)
    if stage.engine != "nanotron":
        nanotron = [s.name for s in recipe.stages if s.engine == "nanotron"]
        raise RecipeError(recipe.file, f"stages[{stage.position}].engine",
                          f"stage {stage_name!r} runs on {stage.engine}, not nanotron (nanotron stages: "
                          f"{', '.join(nanotron) or 'none'}); launch it with recipes/launch.slurm pretrain/sft")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", help="the nanotron YAML the train step emitted")
    parser.add_argument("--tokenizer", help="the data step's tokenizer folder")
    parser.add_argument("--check", action="store_true",
                        help="no training: exit 0 when nanotron and its run_train.py can be loaded here (and, with "
                             "--recipe and --stage, that stage trains on nanotron), else one line (exit 2); "
                             "recipes/launch.slurm runs it first")
    parser.add_argument("--recipe", help="with --check: a pipeline folder")
    parser.add_argument("--stage", help="with --check: the stage of --recipe that is about to be launched")
    parser.add_argument("--run-train", help="nanotron's run_train.py (default: beside a source install)")
    parser.add_argument("--dump-logits", nargs=2, metavar=("IDS", "OUT"),
                        help="no training: the logits of the loaded model for the token ids in IDS (torch.save of a "
                             "[batch, seq] tensor), gathered over TP and saved to OUT by rank 0 (pp 1 only)")
    return parser


def dump_logits(trainer, ids_file: str, out_file: str) -> None:
    """The model's forward on fixed ids, as nanotron computes it (scripts/nanotron_check.py compares it)."""
    import torch
    import torch.distributed as dist

    model = trainer.unwrapped_model.eval()
    ids = torch.load(ids_file).cuda()
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
    if not args.check and not (args.config_file and args.tokenizer):
        parser.error("--config-file and --tokenizer are required (or --check)")
    if bool(args.recipe) != bool(args.stage) or (args.recipe and not args.check):
        parser.error("--recipe and --stage go together, with --check")
    logging.basicConfig(level=logging.INFO)
    try:
        if args.recipe:
            check_stage_engine(args.recipe, args.stage)
        run_train = load_run_train(args.run_train)
        if args.check:
            logger.info("nanotron %s and %s load", getattr(require_nanotron(), "__version__", "?"),
                        run_train.__file__)
            return 0
        from nanotron.trainer import DistributedTrainer

        from .model import classes

        model_class, config_class = classes()
        trainer = DistributedTrainer(args.config_file, config_class=config_class, model_class=model_class)
        if args.dump_logits:
            dump_logits(trainer, *args.dump_logits)
            return 0
        follow_this_schedule(trainer)
        run_train.AutoTokenizer = _DataStepTokenizer(args.tokenizer)
        trainer.train(run_train.get_dataloader(trainer))
        return 0
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora-m nanotron", exc)


if __name__ == "__main__":
    sys.exit(main())
