"""Per-language perplexity of one or more models on held-out text.

    python scripts/evaluate.py --config recipes/aurora-m-tiny/eval.yaml --output_dir runs/tiny/eval \
        --eval_models base=runs/tiny/cap/model redteamed=runs/tiny/cat/model
"""

from aurora_m.evaluation.perplexity import evaluate_perplexity
from aurora_m.scripting import run_script


def main(eval_args, training_args, config_file="<stage config>"):
    return evaluate_perplexity(eval_args, training_args, config_file)


if __name__ == "__main__":
    run_script("eval", main, description=__doc__)
