"""Build a stage's dataset alone, to inspect it before training (mixture.json, mixture.png).

A pretrain YAML (``mixture``) gives packed token blocks; an SFT YAML (``sft_sources``) gives
prompt/completion pairs. Output: ``dataset_dir`` (default OUTPUT_DIR/data).

    python scripts/data.py --config recipes/aurora-m-tiny/cap.yaml --output_dir runs/tiny/cap
"""

from aurora_m.args import SFTDataArguments
from aurora_m.data.build import build_pretrain_dataset, build_sft_dataset, dataset_dir_for
from aurora_m.scripting import run_script


def main(model_args, data_args, training_args, config_file="<stage config>"):
    out = dataset_dir_for(data_args, training_args)
    if isinstance(data_args, SFTDataArguments):
        return build_sft_dataset(data_args, out, config_file)
    return build_pretrain_dataset(model_args, data_args, out, config_file)


if __name__ == "__main__":
    run_script(None, main, description=__doc__)
