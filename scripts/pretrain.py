"""CAP / CAT: continual pretraining of a causal LM (GPTBigCode, Llama, ...) on a weighted, packed mixture.

The stage's dataset is built first when ``dataset_dir`` (default OUTPUT_DIR/data) holds none.
The final model lands in OUTPUT_DIR/model (safetensors + tokenizer), checkpoints next to it; a
killed run resumes from the newest complete checkpoint.

    # tiny twin, CPU
    python scripts/pretrain.py --config recipes/aurora-m-tiny/cap.yaml --output_dir runs/tiny/cap
    # the real thing, CAP then CAT (CAT continues from CAP's weights)
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml scripts/pretrain.py \
        --config recipes/aurora-m-15b/cap.yaml --output_dir runs/aurora-m-15b/cap
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml scripts/pretrain.py \
        --config recipes/aurora-m-15b/cat.yaml --output_dir runs/aurora-m-15b/cat \
        --model_name_or_path runs/aurora-m-15b/cap/model
"""

from aurora_m.pipeline.script_guard import claim_output_dir
from aurora_m.scripting import StageParser, run_script
from aurora_m.train.pretrain import train_pretrain


def make_parser():
    return StageParser("pretrain", description=__doc__.split("\n\n")[0])


def main(model_args, mixture_args, training_args, config_file="<stage config>"):
    parsed = (model_args, mixture_args, training_args)
    claim_output_dir(training_args.output_dir, "pretrain", parsed, config_file, mixture_args.dataset_dir)
    return train_pretrain(model_args, mixture_args, training_args, config_file)


if __name__ == "__main__":
    run_script(make_parser, main)
