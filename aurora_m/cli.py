"""``aurora-m``: run a recipe, check it, run one step of it, or publish a variant of a run.

    aurora-m run RECIPE_DIR --output-dir DIR          every stage in order; complete steps are skipped
    aurora-m validate RECIPE_DIR                      check without running (exit 0 valid, 2 invalid)
    aurora-m data RECIPE_DIR --stage cap --output-dir DIR     one step of one stage, run again
    aurora-m train RECIPE_DIR --stage cat --output-dir DIR
    aurora-m eval RECIPE_DIR --stage eval --output-dir DIR
    aurora-m eval code --problems humaneval --canonical   grade reference solutions in the code sandbox
    aurora-m eval judge --responses FILE.jsonl        a safety judge's verdicts and agreement with labels
    aurora-m publish RUN_DIR --variant NAME|--all      push the run's export of each variant, one commit each
    aurora-m publish RUN_DIR --variant NAME --dry-run --out DIR    write that commit to DIR, print its operations
    aurora-m publish RUN_DIR --variant NAME --out DIR  export a variant into a folder of its own (no push)
    aurora-m rehearse RECIPE_DIR --output-dir DIR     run every stage in miniature on its real sources first
    aurora-m patches                                  the config patches a recipe can name
    aurora-m plan RECIPE_DIR --gpus N --gpu KIND      what the recipe costs on a cluster: days, memory, disk, data

``run`` and the step commands take ``--key value`` overrides of stage keys (``--learning_rate 2e-4``):
a step command applies them to its stage, ``run`` to every stage that has the key. Mistakes in what
the user gave print one line on stderr and exit with code 2; Ctrl-C exits 130 saying how to resume.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import RecipeError, exit_on_failure
from .extras import check_launches, validate_arguments
from .logs import quiet_progress, setup_logging
from .overrides import did_you_mean
from .plan.command import add_plan_arguments, plan_text
from .rehearsal.command import add_rehearse_arguments, rehearse_status
from .signals import sigterm_as_interrupt
from .stages import engines

logger = logging.getLogger("aurora_m.cli")  # not __name__: that is "__main__" under python -m

STEP_COMMANDS = {
    "data": "build the dataset of a pretrain/sft stage",
    "train": "train a pretrain/sft stage (builds its data if missing)",
    "eval": "evaluate the models of an eval stage ('eval code --problems humaneval --canonical': the sandbox check)",
}


def _stage_list(text: str | None) -> set[str]:
    return {s.strip() for s in text.split(",") if s.strip()} if text else set()


def _checkpoint_options(p) -> None:
    p.add_argument("--restart", help="comma-separated stages whose checkpoints are set aside (start over)")
    p.add_argument(
        "--resume",
        help="comma-separated stages that continue from their checkpoints even though their configuration changed",
    )


def _run_arguments(p) -> None:
    p.add_argument("recipe_dir")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--stages", help="comma-separated stage names to run (default: all)")
    p.add_argument("--force", action="store_true", help="run steps again even if complete")
    _checkpoint_options(p)


def _step_arguments(name: str):
    def add(p) -> None:
        p.add_argument("recipe_dir")
        p.add_argument("--stage", required=name != "eval", help="stage name in pipeline.yaml")
        p.add_argument("--output-dir", required=True, help="the run folder (stage outputs go in DIR/<stage>)")
        _checkpoint_options(p)

    return add


def _publish_arguments(p) -> None:
    from .hub.options import add_publish_arguments

    add_publish_arguments(p)


def _convert_arguments(p) -> None:
    """Every engine's conversion directions (its convert hook): ``hf-to-nanotron``, ``nanotron-to-hf``, ..."""
    directions = p.add_subparsers(dest="direction", required=True)
    for engine in engines():
        if add_directions := engine.hook("convert"):
            add_directions(directions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aurora-m", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        help_text = command.help + (" (takes --key value overrides)" if command.takes_overrides else "")
        command.arguments(sub.add_parser(command.name, help=help_text))
    return parser


def split_overrides(recipe, overrides: list[str], only: str | None = None) -> dict[str, list[str]]:
    """``--key value`` pairs for each stage that has the key (or for ``only``); a key no stage has is an error."""
    from .overrides import BareFlag, overrides_to_dict
    from .stage_checks import stage_dataclasses

    if not overrides:
        return {}
    values = overrides_to_dict(overrides)
    stages = [recipe.stage(only)] if only else recipe.stages
    known = {s.name: {f.name for dc in stage_dataclasses(s.kind, s.engine) for f in fields(dc)} for s in stages}
    out: dict[str, list[str]] = {}
    for key, value in values.items():
        takers = [name for name, keys in known.items() if key in keys]
        if not takers:
            every = set().union(*known.values())
            hint = did_you_mean(f"--{key}", [f"--{k}" for k in every])
            where = f"stage {only!r}" if only else "any stage"
            raise RecipeError(None, f"--{key}", f"not a key of {where}{hint}")
        for name in takers:
            given = [] if isinstance(value, BareFlag) else value if isinstance(value, list) else [value]
            out.setdefault(name, []).extend([f"--{key}", *given])
    return out


def _pipeline(args, overrides: list[str], check: bool = True, only: str | None = None):
    """The recipe, checked (with the overrides, before anything runs or moves), as a Pipeline on the run folder.
    ``only``: the one stage whose step ``args.command`` runs (its engine is needed only for an engine step)."""
    from .overrides import overrides_to_dict
    from .pipeline import Pipeline
    from .recipe import check_engines, load_recipe
    from .stage_checks import check_stage_config
    from .tokenizer import check_caches

    recipe = load_recipe(args.recipe_dir, check_stages=check)
    restart, resume = _stage_list(getattr(args, "restart", None)), _stage_list(getattr(args, "resume", None))
    chosen = _stage_list(getattr(args, "stages", None)) or ({only} if only else set())
    for name in restart | resume | chosen:
        recipe.stage(name)
    if check:
        check_engines(recipe, chosen or None, step=args.command if only else None)
        check_caches()
    for flag, names in (("--restart", restart), ("--resume", resume)):
        if chosen and names - chosen:
            raise RecipeError(
                None,
                flag,
                f"{', '.join(sorted(names - chosen))} is not among the stages this command "
                f"runs ({', '.join(sorted(chosen))})",
            )
    if restart & resume:
        raise RecipeError(
            None,
            "--restart",
            f"{', '.join(sorted(restart & resume))} is given to both --restart and --resume: choose one",
        )
    per_stage = split_overrides(recipe, overrides, only)
    for name, stage_overrides in per_stage.items():
        stage = recipe.stage(name)
        check_stage_config(
            stage.config, stage.kind, overrides=overrides_to_dict(stage_overrides), **recipe.upstream(stage)
        )
    return Pipeline(recipe, args.output_dir, per_stage, targets={only} if only else None)


def _run(args, overrides) -> int:
    restart, resume = _stage_list(args.restart), _stage_list(args.resume)
    if not (args.force or args.stages or overrides or restart or resume):
        quick = _pipeline(args, overrides, check=False)  # no torch import, no validation cost
        if quick.layout.summary.is_file() and quick.all_complete():
            with quick.session("aurora-m run"):
                summary = quick.write_summary()
            logger.info("all %d stages complete in %s; nothing to run", len(summary["stages"]), quick.layout.root)
            print(json.dumps({s["name"]: s["status"] for s in summary["stages"]}))
            return 0
    if args.stages is not None and not _stage_list(args.stages):
        raise RecipeError(None, "--stages", "expected comma-separated stage names, got nothing")
    pipeline = _pipeline(args, overrides)
    stages = sorted(_stage_list(args.stages), key=pipeline.recipe.stage_names.index) if args.stages else None
    with pipeline.session("aurora-m run"):
        summary = pipeline.run(stages, force=args.force, restart=restart, resume=resume)
    print(json.dumps({s["name"]: s["status"] for s in summary["stages"]}))
    return 0


def _validate(args, overrides) -> int:
    from .recipe import check_engines, load_recipe
    from .stage_checks import parse_stage

    recipe = load_recipe(args.recipe_dir)
    check_engines(recipe)
    for stage in recipe.stages:  # TrlParser + the dataclasses' own checks (e.g. TrainingArguments)
        parse_stage(stage.config, stage.kind, validate_only=True, **recipe.upstream(stage))
    check_launches([(s.name, s.config) for s in recipe.stages], args.accelerate_config)
    print(f"{recipe.file}: valid ({len(recipe.stages)} stages: {' -> '.join(recipe.stage_names)})")
    return 0


def _step(args, overrides) -> int:
    from .recipe import load_recipe

    if args.stage is None:
        evals = [s for s in load_recipe(args.recipe_dir, check_stages=False).stages if s.spec.evaluates]
        if len(evals) != 1:
            raise RecipeError(args.recipe_dir, "--stage", "name the eval stage with --stage")
        args.stage = evals[0].name
    pipeline = _pipeline(args, overrides, only=args.stage)
    stage = pipeline.recipe.stage(args.stage)
    if args.command not in stage.steps:
        raise RecipeError(
            pipeline.recipe.file,
            f"stages[{stage.position}]",
            f"a {stage.kind} stage has steps {', '.join(stage.steps)}, not {args.command!r}",
        )
    with pipeline.session(f"aurora-m {args.command}"):
        pipeline.run_step(stage, args.command, restart=_stage_list(args.restart), resume=_stage_list(args.resume))
        print(json.dumps({f"{stage.name}/{args.command}": pipeline.step_status(stage, args.command)}))
    return 0


def _publish(args, overrides) -> int:
    from .pipeline.publish import publish_from_run, push_from_run, variant_names

    names = variant_names(args.run_dir, args.variant, args.out)
    for name in names:  # one folder per variant inside --out with --all
        out = None if args.out is None else Path(args.out) / name if args.all else Path(args.out)
        if out is not None and not args.dry_run:
            print(
                f"{name}: exported to {publish_from_run(args.run_dir, name, out, overwrite=args.overwrite)} "
                f"(nothing pushed)"
            )
            continue
        operations, where = push_from_run(
            args.run_dir, name, dry_run=args.dry_run, out_dir=out, overwrite=args.overwrite
        )
        print("\n".join(operations))
        if args.dry_run:
            print(f"{name}: dry run, nothing pushed" + (f"; the commit's files are in {where}" if where else ""))
        else:
            print(f"{name}: pushed {where}")
    return 0


def _convert(args, overrides) -> int:
    from .layout import owning_folder

    if owner := owning_folder(args.dst):  # a run's stages own their folders; an export is pushed as written
        raise RecipeError(args.dst, None, f"is inside the {owner[1]} {owner[0]}: choose a folder outside it")
    print(f"converted: {args.convert(args)}")
    return 0


def _patches(args, overrides) -> int:
    from .patches import PATCHES

    for patch in PATCHES.values():
        needs = {"learned": "models with learned positions", "": "any model"}.get(patch.requires, patch.requires)
        print(f"{patch.name + (':VALUE' if patch.needs_value else ''):<16} {patch.help} [{needs}]")
    return 0


@dataclass(frozen=True)
class Command:
    """One ``aurora-m`` command: its arguments, and what runs it (with the ``--key value`` overrides it takes)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, list[str]], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    takes_overrides: bool = False


# THE list of commands: `aurora-m --help` shows them in this order
COMMANDS = [
    Command("run", "run every stage of a recipe in order", _run, _run_arguments, takes_overrides=True),
    Command("validate", "check a recipe without running it", _validate, validate_arguments),
    *(Command(name, text, _step, _step_arguments(name), takes_overrides=True) for name, text in STEP_COMMANDS.items()),
    Command(
        "publish",
        "push variants of a run to the Hub, one commit each "
        "(--dry-run --out DIR: write the commit; --out DIR: export)",
        _publish,
        _publish_arguments,
    ),
    Command(
        "rehearse",
        "read every source of a recipe and run its filters, in miniature",
        lambda args, _: print(json.dumps(rehearse_status(args))) or 0,
        add_rehearse_arguments,
    ),
    Command("patches", "list the config patches (and the models each applies to)", _patches),
    Command(
        "plan", "what a recipe costs on a cluster", lambda args, _: print(plan_text(args)) or 0, add_plan_arguments
    ),
    Command(
        "convert",
        "convert a GPTBigCode checkpoint between transformers and another engine's layout",
        _convert,
        _convert_arguments,
    ),
]


def _eval_code(argv: list[str]) -> int:
    from .evaluation.code.options import build_eval_code_parser

    args = build_eval_code_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        from .evaluation import code

        if not (args.canonical or args.wrong):
            raise RecipeError(
                None,
                "--canonical",
                "eval code grades reference solutions: give --canonical (or "
                "--wrong); a model's completions are graded by the eval stage",
            )
        code.check_grading_flags(args.workers, args.timeout)
        code.require_opt_in()
        sandbox = code.LocalSandbox(args.workers)
        sandbox.require(args.min_isolation, key="--min-isolation")
        problems = code.load_problem_set(args.problems)
        isolation = sandbox.isolation_record()
        print(f"isolation: {isolation['level']} ({isolation['description']})")
        outcomes = code.grade_reference(problems, sandbox, wrong=args.wrong, timeout_s=args.timeout)
        counts = code.status_counts(outcomes)
        print(f"graded: {len(problems)} ({', '.join(f'{s} {counts[s]}' for s in code.STATUSES)})")
        print(f"pass@1: {round(code.pass_rates(outcomes)['pass@1'], 4)}")
        return 0
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora-m", exc)


def _eval_judge(argv: list[str]) -> int:
    from .evaluation.safety.judge_cli import main as judge_main

    return judge_main(argv, out=print)  # the library formats its report, the CLI prints it


EVAL_TOOLS = {"code": _eval_code, "judge": _eval_judge}  # `aurora-m eval TOOL ...`, not an eval stage


def _eval_tool(argv: list[str]) -> str | None:
    """``code`` for ``aurora-m eval code ...`` (``judge`` likewise), not ``aurora-m eval RECIPE_DIR`` (a recipe
    folder named code: ``./code``)."""
    global_flags = {"-q", "--quiet", "--verbose"}
    words = [a for a in argv if a not in global_flags and not (a.startswith("-v") and a.strip("-v") == "")]
    if words[:1] != ["eval"] or len(words) < 2 or words[1] not in EVAL_TOOLS:
        return None
    return None if any(a.split("=")[0] == "--output-dir" for a in argv) else words[1]


def main(argv: list[str] | None = None) -> int:
    with sigterm_as_interrupt():
        return _main(sys.argv[1:] if argv is None else list(argv))


def _main(argv: list[str]) -> int:
    if "-q" in argv or "--quiet" in argv:
        quiet_progress()  # before the parser imports transformers (and with it tqdm)
    tool = _eval_tool(argv)
    if tool:
        rest = list(argv)
        rest.remove("eval")
        rest.remove(tool)
        return EVAL_TOOLS[tool](rest)
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    if overrides and not command.takes_overrides:
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return command.run(args, overrides)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora-m", exc, getattr(args, "output_dir", None) or getattr(args, "out", None))


if __name__ == "__main__":
    sys.exit(main())
