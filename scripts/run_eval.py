"""Evaluate one or more models: the suites the eval YAML names (perplexity, code, harness, safety).

(Named run_eval.py, not evaluate.py: a script's folder comes first on sys.path, so a script named
like an installed package would shadow it for every library that imports it.)

    python scripts/run_eval.py --config recipes/aurora-m-tiny/eval.yaml --output_dir runs/tiny/eval \
        --eval_models base=runs/tiny/cap/model redteamed=runs/tiny/cat/model
"""

from aurora_m.evaluation.stage import evaluate_variants
from aurora_m.scripting import StageParser, run_script


def make_parser():
    return StageParser("eval", description=__doc__.split("\n\n")[0])


def main(eval_args, training_args, config_file="<stage config>"):
    return evaluate_variants(eval_args, training_args, config_file)


if __name__ == "__main__":
    run_script(make_parser, main)
