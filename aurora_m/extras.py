"""Optional packages a recipe or a launch needs, checked before any work starts.

A recipe may report to tensorboard / trackio / wandb, ask for FlashAttention, or compile the model;
an accelerate config may ask for DeepSpeed or FSDP. None of that is installed by default (setup.cfg
declares extras for them), and each would otherwise fail with an ImportError after the data step,
hours into a run. Here each becomes one line naming the key and the install command.

Two moments: a recipe (``aurora-m validate``, every stage parse) is checked for what it names, on any
machine; a launch (``run_script``, on the machine that trains) is checked for the machine too: a GPU
for FlashAttention, a compiler toolchain for ``torch.compile``. Under ``accelerate launch`` both also
check the packages its environment asks for (ACCELERATE_USE_DEEPSPEED needs deepspeed before
TrainingArguments can even be built). ``python -m aurora_m.extras ACCELERATE_CONFIG`` checks an
accelerate config file before a job starts (recipes/launch.slurm runs it before the data step).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

from .errors import RecipeError
from .overrides import did_you_mean, origin, read_yaml

logger = logging.getLogger(__name__)

ACCELERATE_CONFIG = "accelerate config"
# report_to integrations this project declares an extra for: name -> modules, any of which serves
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
# the others transformers knows: name -> (module, PyPI package) where they differ from the name
OTHER_REPORTERS = {
    "azure_ml": ("azureml", "azureml-core"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "flyte": ("flytekit", "flytekit"),
    "kubeflow": ("kfp", "kfp"),
}
# attention implementations that need a package and a CUDA GPU: name -> (module, install command)
FLASH_ATTENTION = {
    "flash_attention_2": (
        "flash_attn",
        "pip install 'aurora-m[flash-attn]' (or pip install flash-attn --no-build-isolation)",
    ),
    "flash_attention_3": ("flash_attn_interface", "build FlashAttention 3 from flash-attention's hopper/ folder"),
}
HUB_KERNEL = ("kernels", "pip install kernels")  # attn_implementation: "kernels-community/flash-attn" and the like
TRUE = ("true", "1", "yes", "on", "t", "y")


def importable(module: str) -> bool:
    """Whether ``import module`` can work, without importing it (``sys.modules[name] = None`` blocks it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(extra: str, package: str | None = None) -> str:
    return f"pip install 'aurora-m[{extra}]' (or pip install {package or extra})"


# ----------------------------------------------------------------------------- a recipe, and a launch
def check_extras(config_file, *settings, launch: bool = False) -> None:
    """Refuse what ``settings`` need but this environment lacks, in one line naming the key.

    ``settings``: a stage's mapping (YAML plus command-line overrides, as validation sees it) or its
    parsed dataclasses (training and model arguments, as a script sees them). With ``launch`` the
    machine is the one that trains: its GPU and compiler count too. What an ``accelerate launch``
    environment asks for (DeepSpeed, FSDP) is checked every time: only a launcher sets it.
    """
    # set only under `accelerate launch`, and TrainingArguments already needs deepspeed when it is: check it first
    needs = _launch_needs(os.environ)
    values, where = _settings(config_file, settings)
    # what the stage asks of its launch first (no package fixes it), then what the launch asks of this machine
    check_launch_fits(values, where, needs.get("distributed_type"), ACCELERATE_CONFIG)
    _check_distributed(ACCELERATE_CONFIG, needs)
    _check_report_to(values, where)
    _check_attention(values, where, launch)
    if launch:
        _check_compile(values, where)
        _warn_fsdp_on_cpu(os.environ)


def _settings(config_file, settings):
    """One mapping of key -> value over dicts and dataclasses, and where each key came from (file or flag)."""
    values, given = {}, {}
    for item in settings:
        if isinstance(item, dict):
            values.update(item)
            given.update(item)  # as YAML or the command line gave them: origin() tells which
        elif is_dataclass(item):
            values.update({f.name: getattr(item, f.name) for f in fields(item) if f.init})

    def where(key):
        return origin(given, key, config_file)

    return values, where


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in TRUE)


def _check_report_to(values: dict, where) -> None:
    value = values.get("report_to")
    names = [value] if isinstance(value, str) else list(value or [])
    if not names or names in (["none"], ["all"]):
        return
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            hint = did_you_mean(name, INTEGRATION_TO_CALLBACK)
            raise RecipeError(*where("report_to"), f"unknown integration {name!r}{hint}")
        if name in REPORTERS:
            if not any(importable(m) for m in REPORTERS[name]):
                raise RecipeError(
                    *where("report_to"), f"{name!r} is not installed here: {install_hint(name)}; or report_to: none"
                )
            continue
        module, package = OTHER_REPORTERS.get(name, (name, name))
        if name not in get_available_reporting_integrations() and not importable(module):
            raise RecipeError(
                *where("report_to"), f"{name!r} is not installed here: pip install {package} (or report_to: none)"
            )


def _requested_attention(values: dict) -> list[tuple[str, str]]:
    """(implementation, key) for each attention the stage asks for: its field and its ``attn:NAME`` patches."""
    asked = []
    if values.get("attn_implementation"):
        asked.append((str(values["attn_implementation"]), "attn_implementation"))
    for spec in values.get("config_patches") or []:
        name, _, value = str(spec).partition(":")
        if name == "attn" and value:
            asked.append((value, "config_patches"))
    return asked


def _check_attention(values: dict, where, launch: bool) -> None:
    for implementation, key in _requested_attention(values):
        if implementation in FLASH_ATTENTION:
            module, hint = FLASH_ATTENTION[implementation]
        elif "/" in implementation:
            module, hint = HUB_KERNEL
        else:
            continue  # sdpa, eager, flex_attention: in torch itself
        if not importable(module):
            raise RecipeError(
                *where(key),
                f"{implementation} needs the {module} module, which is not installed here: {hint}; or attn:sdpa",
            )
        if launch and not _truthy(values.get("use_cpu")):
            import torch

            if not torch.cuda.is_available():
                raise RecipeError(
                    *where(key),
                    f"{implementation} needs a CUDA GPU and none is visible here (use attn:sdpa on this machine)",
                )


def _check_compile(values: dict, where) -> None:
    """``torch.compile`` needs a backend that exists and, for inductor, triton on a GPU or a C++ compiler on a CPU."""
    backend = values.get("torch_compile_backend")
    if not (_truthy(values.get("torch_compile")) or backend or values.get("torch_compile_mode")):
        return
    import torch

    backend = str(backend or "inductor")
    key = "torch_compile_backend" if values.get("torch_compile_backend") else "torch_compile"
    from torch._dynamo import list_backends

    known = list_backends(exclude_tags=())
    if backend not in known:
        raise RecipeError(
            *where(key), f"torch.compile has no backend {backend!r} here (available: {', '.join(sorted(known))})"
        )
    if backend != "inductor":
        return
    if torch.cuda.is_available() and not _truthy(values.get("use_cpu")):
        from torch.utils._triton import has_triton

        if not has_triton():
            raise RecipeError(
                *where(key),
                "torch.compile (inductor) on a GPU needs triton, which is not installed "
                "here: pip install triton (or torch_compile: false)",
            )
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        raise RecipeError(
            *where(key),
            "torch.compile (inductor) on a CPU needs a C++ compiler (g++ or clang++) on "
            "PATH (or torch_compile: false)",
        )


# ----------------------------------------------------------------------------- accelerate launch
# stage settings a kind of launch cannot carry out: (key, value, distributed_type) -> why, and the fix. Each is
# otherwise found only once training starts, after the data step and a 15.5B model load.
LAUNCH_CONFLICTS = {
    ("init_from", "full_state", "DEEPSPEED"): (
        "carries the upstream stage's AdamW state on, which DeepSpeed keeps in its own checkpoint format: launch "
        "this stage and its upstream with recipes/accelerate_configs/fsdp2.yaml, or set init_from: weights"
    ),
}


def check_launch_fits(values: dict, where, distributed_type: str | None, launch: str | Path) -> None:
    """Refuse a stage whose settings the launch (an accelerate config's ``distributed_type``) cannot carry out."""
    kind = str(distributed_type or "").upper()
    for (key, value, conflict), why in LAUNCH_CONFLICTS.items():
        if kind == conflict and str(values.get(key)) == value:
            file, name = where(key)
            raise RecipeError(file, name, f"{value} under {launch} ({kind}) {why}")


def check_launches(stages: list[tuple[str, Path]], given: list[str] | None) -> None:
    """``aurora-m validate --accelerate-config [STAGE=]CONFIG``: each stage (name, YAML) against the launch it will
    run under; a CONFIG without a stage is every stage's. CONFIG: a file or a name of recipes/accelerate_configs/."""
    from .budget import check_launch_budget
    from .overrides import number, read_yaml

    names = [name for name, _ in stages]
    for item in given or []:
        stage, eq, config = item.rpartition("=")
        if eq and stage not in names:
            raise RecipeError(
                "command line", "--accelerate-config", f"no stage {stage!r} (stages: {', '.join(names)})"
            )
        launch = accelerate_config_path(config)
        ranks = number((read_yaml(launch) or {}).get("num_processes", 1))  # accelerate's, over every machine
        for name, file in stages:
            if not eq or name == stage:
                values, where = read_yaml(Path(file)) or {}, lambda key, file=file: (file, key)
                check_launch_fits(values, where, distributed_type(launch), launch)
                # a max_steps stated for one process trains each sequence N times over under N processes
                check_launch_budget(values, where, int(ranks) if ranks >= 1 else None)


def validate_arguments(parser) -> None:
    """``aurora-m validate``'s arguments: the recipe, and the launch each stage will run under."""
    parser.add_argument("recipe_dir")
    parser.add_argument(
        "--accelerate-config",
        action="append",
        metavar="[STAGE=]CONFIG",
        help="check the stages against the launch they will run under (a file or a name of "
        "recipes/accelerate_configs/; STAGE= for one stage; repeatable), e.g. cap=fsdp2 cat=fsdp2 sft=zero3",
    )


def accelerate_config_path(config: str) -> Path:
    """A file, or a name of recipes/accelerate_configs/ (of the working folder, then of this checkout)."""
    for path in (
        Path(config),
        Path("recipes") / "accelerate_configs" / f"{config}.yaml",
        Path(__file__).resolve().parents[1] / "recipes" / "accelerate_configs" / f"{config}.yaml",
    ):
        if path.is_file():
            return path
    raise RecipeError(
        "command line",
        "--accelerate-config",
        f"no accelerate config {config!r} (a file, or a name of recipes/accelerate_configs/)",
    )


def distributed_type(path: str | Path) -> str | None:
    """The ``distributed_type`` of an accelerate config: a file, or a name of recipes/accelerate_configs/."""
    return _read_accelerate_config(path).get("distributed_type")


def _read_accelerate_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "accelerate config not found")
    config = read_yaml(path)  # bad bytes, bad YAML, not a mapping: one line each
    if not isinstance(config.get("distributed_type", "NO"), str):
        raise RecipeError(path, "distributed_type", "expected a name (NO, MULTI_GPU, FSDP, DEEPSPEED, ...)")
    return config


def _warn_fsdp_on_cpu(env) -> None:
    if _truthy(env.get("ACCELERATE_USE_FSDP", "false")):
        import torch

        if not torch.cuda.is_available():
            logger.warning(
                "the accelerate config asks for FSDP, which accelerate turns on only on GPUs: on this CPU "
                "every rank holds the whole model (plain data parallel)"
            )


def _launch_needs(env) -> dict:
    """The accelerate config keys an ``accelerate launch`` environment stands for (ACCELERATE_USE_DEEPSPEED, ...)."""
    needs = {}
    if _truthy(env.get("ACCELERATE_USE_DEEPSPEED", "false")):
        needs["distributed_type"] = "DEEPSPEED"
        needs["zero_stage"] = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        needs["zero3_save_16bit_model"] = env.get("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL")
    elif _truthy(env.get("ACCELERATE_USE_FSDP", "false")):
        needs["distributed_type"] = "FSDP"
        needs["fsdp_version"] = env.get("FSDP_VERSION", "1")
    return needs


def check_accelerate_config(path: str | Path, stage_config: str | Path | None = None, overrides=()) -> None:
    """An accelerate config file's needs, checked on this machine before a job spends time on its data step;
    with ``stage_config`` (and its ``--key value`` overrides), whether the stage's settings fit that launch."""
    config = _read_accelerate_config(path)
    if stage_config is not None:
        from .overrides import overrides_to_dict, read_yaml

        stage = {**read_yaml(Path(stage_config)), **overrides_to_dict(list(overrides))}
        check_launch_fits(stage, lambda key: origin(stage, key, stage_config), config.get("distributed_type"), path)
    deepspeed = config.get("deepspeed_config") or {}
    fsdp = config.get("fsdp_config") or {}
    _check_distributed(
        path,
        {
            "distributed_type": config.get("distributed_type"),
            "zero_stage": deepspeed.get("zero_stage"),
            "zero3_save_16bit_model": deepspeed.get("zero3_save_16bit_model"),
            "fsdp_version": fsdp.get("fsdp_version", 1),
        },
    )
    if stage_config is not None:  # a stated max_steps over the launch's ranks (launch.slurm: nodes x GPUs)
        from .budget import check_launch_budget

        check_launch_budget(stage, lambda key: origin(stage, key, stage_config))


def _check_distributed(source, needs: dict) -> None:
    kind = str(needs.get("distributed_type") or "").upper()
    if kind == "DEEPSPEED":
        if not importable("deepspeed"):
            raise RecipeError(
                source,
                "distributed_type",
                f"DEEPSPEED needs deepspeed, which is not installed here: {install_hint('deepspeed')}",
            )
        saves_16bit = needs.get("zero3_save_16bit_model")
        if str(needs.get("zero_stage")) == "3" and saves_16bit is not None and not _truthy(str(saves_16bit)):
            raise RecipeError(
                source,
                "zero3_save_16bit_model",
                "false leaves the final model folder without safetensors weights under ZeRO-3: set it to true",
            )
    elif kind == "FSDP" and str(needs.get("fsdp_version")) == "2" and not _has_fully_shard():
        import torch

        raise RecipeError(
            source,
            "fsdp_version",
            f"2 needs torch.distributed.fsdp.fully_shard (torch >= 2.6 with "
            f"distributed support), this is torch {torch.__version__}",
        )


def _has_fully_shard() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m aurora_m.extras ACCELERATE_CONFIG [STAGE_CONFIG [--key value ...]]``: exit 0 when this machine
    has what the accelerate config needs (and the stage's settings fit that launch)."""
    from .errors import exit_on_failure
    from .logs import setup_logging

    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a.startswith("-") for a in argv[:2]):
        raise SystemExit(
            "usage: python -m aurora_m.extras ACCELERATE_CONFIG.yaml [STAGE_CONFIG.yaml [--key value ...]]"
        )
    try:
        check_accelerate_config(argv[0], argv[1] if len(argv) > 1 else None, argv[2:])
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        return exit_on_failure("aurora_m.extras", exc)
    logger.info("%s: this machine has what it needs", argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
