"""Build a stage's dataset alone, to inspect it before training (mixture.json, filter_report.json, mixture.png).

A pretrain YAML (``mixture``) gives datatrove token shards per source, the filter report and the
training stream's index; an SFT YAML (``sft_sources``) gives prompt/completion pairs; ``--help``
lists the pretrain keys. Output: ``dataset_dir`` (default OUTPUT_DIR/data). On a CPU node, a bf16
recipe needs ``--use_cpu true`` (the trainer keys are parsed, not used).

    python scripts/data.py --config recipes/aurora-m-tiny/cap.yaml --output_dir runs/tiny/cap
"""

from aurora_m.data.build import build_pretrain_dataset, build_sft_dataset
from aurora_m.layout import StageDir
from aurora_m.pipeline.script_guard import claim_output_dir
from aurora_m.scripting import StageParser, run_script

BUILDERS = {"pretrain": build_pretrain_dataset, "sft": lambda model_args, *rest: build_sft_dataset(*rest)}


def make_parser():
    return StageParser(tuple(BUILDERS), description=__doc__.split("\n\n")[0])


def main(model_args, data_args, training_args, config_file="<stage config>", kind="pretrain"):
    if not data_args.dataset_dir:  # the stage folder's data/: the folder is checked and claimed as training's is
        claim_output_dir(training_args.output_dir, kind, (model_args, data_args, training_args), config_file, None)
    out = data_args.dataset_dir or StageDir(training_args.output_dir).data.root
    return BUILDERS[kind](model_args, data_args, out, config_file)


if __name__ == "__main__":
    run_script(make_parser, main)
