"""``aurora-m``: run a recipe, check it, or run one stage of it.

    aurora-m run RECIPE_DIR --output-dir DIR          every stage in order; complete ones are skipped
    aurora-m validate RECIPE_DIR                      check without running (exit 0 valid, 2 invalid)
    aurora-m data RECIPE_DIR --stage cap --output-dir DIR     one step of one stage, run again
    aurora-m train RECIPE_DIR --stage cat --output-dir DIR
    aurora-m eval RECIPE_DIR --stage eval --output-dir DIR
    aurora-m publish RUN_DIR --variant NAME --out DIR  one variant's export folder
    aurora-m patches                                  the GPTBigCode config patches a recipe can name

Mistakes in what the user gave (a recipe, a flag) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import RecipeError

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aurora-m", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage of a recipe in order")
    run.add_argument("recipe_dir")
    run.add_argument("--output-dir", required=True)
    run.add_argument("--stages", help="comma-separated stage names to run (default: all)")
    run.add_argument("--force", action="store_true", help="run steps again even if complete")

    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe_dir")

    for name, help_text in (("data", "build the dataset of a pretrain/sft stage"),
                            ("train", "train a pretrain/sft stage (builds its data if missing)"),
                            ("eval", "evaluate the models of an eval stage")):
        step = sub.add_parser(name, help=help_text)
        step.add_argument("recipe_dir")
        step.add_argument("--stage", required=name != "eval", help="stage name in pipeline.yaml")
        step.add_argument("--output-dir", required=True, help="the run folder (stage outputs go in DIR/<stage>)")

    publish = sub.add_parser("publish", help="write one variant's export folder (model, card, plots)")
    publish.add_argument("run_dir")
    publish.add_argument("--variant", required=True)
    publish.add_argument("--out", required=True)

    sub.add_parser("patches", help="list the GPTBigCode config patches")
    return parser


def _run(args) -> int:
    from .pipeline import Pipeline
    from .recipe import load_recipe

    quick = Pipeline(load_recipe(args.recipe_dir, check_stages=False), args.output_dir)
    if not args.force and not args.stages and quick.all_complete():
        summary = quick.write_summary()  # nothing to do: no torch import, no validation cost
        print(f"[pipeline] all {len(summary['stages'])} stages complete in {quick.run_dir}; nothing to run")
        return 0
    pipeline = Pipeline(load_recipe(args.recipe_dir), args.output_dir)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    for name in stages or []:
        pipeline.recipe.stage(name)
    summary = pipeline.run(stages, force=args.force)
    print(json.dumps({s["name"]: s["status"] for s in summary["stages"]}))
    return 0


def _validate(args) -> int:
    from .recipe import load_recipe, parse_stage

    recipe = load_recipe(args.recipe_dir)
    for stage in recipe.stages:  # TrlParser + the dataclasses' own checks (e.g. TrainingArguments)
        parse_stage(stage.config, stage.kind, validate_only=True, has_model_input=bool(stage.inputs))
    print(f"{recipe.file}: valid ({len(recipe.stages)} stages: {' -> '.join(recipe.stage_names)})")
    return 0


def _step(args) -> int:
    from .pipeline import Pipeline
    from .recipe import load_recipe

    pipeline = Pipeline(load_recipe(args.recipe_dir), args.output_dir)
    if args.stage is None:
        evals = [s for s in pipeline.recipe.stages if s.kind == "eval"]
        if len(evals) != 1:
            raise RecipeError(pipeline.recipe.file, "stages", "name the eval stage with --stage")
        args.stage = evals[0].name
    stage = pipeline.recipe.stage(args.stage)
    step = {"data": "data", "train": "train", "eval": "eval"}[args.command]
    if step not in stage.steps:
        raise RecipeError(pipeline.recipe.file, f"stages.{stage.name}",
                          f"a {stage.kind} stage has steps {', '.join(stage.steps)}, not {step!r}")
    pipeline.run_step(stage, step)
    return 0


def _publish(args) -> int:
    from .pipeline import publish_from_run

    publish_from_run(args.run_dir, args.variant, args.out)
    return 0


def _patches(args) -> int:
    from .patches import PATCHES

    for patch in PATCHES.values():
        print(f"{patch.name + (':VALUE' if patch.needs_value else ''):<14} {patch.help}")
    return 0


COMMANDS = {"run": _run, "validate": _validate, "data": _step, "train": _step, "eval": _step,
            "publish": _publish, "patches": _patches}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RecipeError as err:
        print(f"aurora-m: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
