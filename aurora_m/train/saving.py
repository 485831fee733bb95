"""The final save of a training stage: full safetensors weights, config and tokenizer, whatever the launch.

Under FSDP with ``fsdp_state_dict_type: SHARDED_STATE_DICT`` (recipes/accelerate_configs/fsdp2.yaml),
``Trainer.save_model`` writes nothing at all: checkpoints stay sharded (each rank writes its own
shard, no gather, fast and light on rank 0's memory), but the model folder that CAT, SFT, evaluation
and publishing read must hold full weights. So the final save switches the plugin to
``FULL_STATE_DICT`` for that one save and back afterwards (a later checkpoint stays sharded).
DeepSpeed ZeRO-3 gathers 16-bit weights when ``zero3_save_16bit_model`` is on; DDP and a single
process save as is.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from ..errors import RecipeError

logger = logging.getLogger(__name__)
FULL = "FULL_STATE_DICT"


def save_full_model(trainer, folder: str | Path) -> Path:
    """Write ``folder`` with full safetensors weights, ``config.json`` and the tokenizer.

    Collective: every rank must call it (FSDP and ZeRO-3 gather the shards from all ranks); only
    the main process writes. Raises when the main process finds no full weights afterwards.
    """
    folder = Path(folder)
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is not None and FULL not in str(plugin.state_dict_type):
        with full_state_dict(plugin):
            trainer.save_model(str(folder))
    else:
        trainer.save_model(str(folder))
    if trainer.is_world_process_zero() and not _is_adapter(trainer.model):  # LoRA: merged after this
        _check_full_weights(folder)
    return folder


def _is_adapter(model) -> bool:
    from .lora import is_peft_model

    return is_peft_model(model)


@contextmanager
def full_state_dict(plugin):
    """FSDP's state dict type set to FULL_STATE_DICT for one save, then restored with its configs.

    ``set_state_dict_type`` keeps an existing (sharded) state dict config, so the configs are cleared
    first to get the full ones, and put back afterwards for the checkpoints that may follow.
    """
    saved = (plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config)
    logger.info(
        "FSDP: gathering the full state dict for the final save (checkpoints stay %s)",
        str(saved[0]).rsplit(".", 1)[-1],
    )
    plugin.state_dict_config = plugin.optim_state_dict_config = None
    plugin.set_state_dict_type(FULL)
    try:
        yield plugin
    finally:
        plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config = saved


def _check_full_weights(folder: Path) -> None:
    from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    if not (folder / CONFIG_NAME).is_file():
        raise RuntimeError(f"the final save wrote no {CONFIG_NAME} into {folder}")
    if not ((folder / SAFE_WEIGHTS_NAME).is_file() or (folder / SAFE_WEIGHTS_INDEX_NAME).is_file()):
        # ZeRO-3 without a 16-bit gather leaves a DeepSpeed checkpoint instead of weights
        raise RecipeError(
            None,
            "accelerate config",
            f"the final save wrote no {SAFE_WEIGHTS_NAME} into {folder}: with DeepSpeed ZeRO-3 set "
            f"zero3_save_16bit_model: true (recipes/accelerate_configs/zero3.yaml does)",
        )
