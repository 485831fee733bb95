"""Safety SFT with TRL's SFTTrainer: Instruction/Response pairs, loss on the responses only.

    python scripts/sft.py --config recipes/aurora-m-tiny/sft.yaml --output_dir runs/tiny/sft \
        --model_name_or_path runs/tiny/cat/model
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml scripts/sft.py \
        --config recipes/aurora-m-15b/sft.yaml --output_dir runs/aurora-m-15b/sft \
        --model_name_or_path runs/aurora-m-15b/cat/model
"""

from aurora_m.pipeline.script_guard import claim_output_dir
from aurora_m.scripting import StageParser, run_script
from aurora_m.train.sft import train_sft


def make_parser():
    return StageParser("sft", description=__doc__.split("\n\n")[0])


def main(model_args, data_args, sft_config, config_file="<stage config>"):
    parsed = (model_args, data_args, sft_config)
    claim_output_dir(sft_config.output_dir, "sft", parsed, config_file, data_args.dataset_dir)
    return train_sft(model_args, data_args, sft_config, config_file)


if __name__ == "__main__":
    run_script(make_parser, main)
