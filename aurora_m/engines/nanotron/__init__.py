"""The nanotron engine: 3D-parallel (TP x PP x DP) CAP and CAT from the same stage YAML.

This package is the only place that imports nanotron, and only inside functions (:func:`require_nanotron`):
the package and the test suite work without it. What runs on a CPU here, without nanotron: checkpoint
conversion both ways (:mod:`.convert`, safetensors written directly), a plain-PyTorch forward pass over the
nanotron-layout tensors (:mod:`.reference`), and the emission of nanotron's YAML (:mod:`.config`), checked
against the config schema recorded from the pinned commit (:mod:`.schema`). What needs nanotron and a GPU:
the GPTBigCode model (:mod:`.model`) and the torchrun entry point (:mod:`.entry`).
"""

from __future__ import annotations

from ...stages import Engine
from .folders import NanotronDirs

# The nanotron source commit this engine was written and checked against (github.com/huggingface/nanotron):
# its config schema is recorded in tests/fixtures/nanotron/schema.json.
PINNED_COMMIT = "2411b022a75fb7f7561a1bb4166706da5e1b76de"
# What the pinned commit needs beside the project's own install (seen by running its trainer): dacite and einops
# (imported, not declared with --no-deps), flash-attn, and grouped_gemm, which nanotron.nn.moe requires at import
# even for a dense model. Not numpy < 2: its pin is metadata only, and today's pyarrow (datasets) needs numpy 2.
INSTALL = (
    f"install nanotron from source at commit {PINNED_COMMIT[:12]} into the environment aurora-m is installed "
    "in, on the GPU nodes, beside the cluster's torch and flash-attn: git clone "
    "https://github.com/huggingface/nanotron && cd nanotron && "
    f"git checkout {PINNED_COMMIT} && pip install --no-deps -e . && pip install dacite einops && "
    "pip install --no-build-isolation git+https://github.com/fanshiqing/grouped_gemm@main "
    "(PyPI's nanotron 0.4 does not import; see docs/nanotron.md)"
)


def require_nanotron():
    """Import nanotron, or one line naming the install steps (a RecipeError: exit code 2, no traceback)."""
    from ...errors import RecipeError

    try:
        import nanotron
        from nanotron.config import Config  # noqa: F401 - PyPI 0.4 fails here (circular import)

        # what the entry point runs; at the pinned commit its imports also need flash-attn, einops and
        # grouped_gemm (nanotron.nn.moe raises RuntimeError, not ImportError, without it)
        from nanotron.trainer import DistributedTrainer  # noqa: F401
    except (ImportError, RuntimeError) as err:
        raise RecipeError(None, "engine", f"nanotron is not importable here ({err}): {INSTALL}") from None
    return nanotron


def checkpoints(dirs):
    """nanotron's step folders (``nanotron/N``), oldest first: what a nanotron stage resumes from."""
    return NanotronDirs(dirs).steps()


def set_aside(dirs, folder) -> None:
    """The whole checkpoints folder (with its latest.txt) and the loss lines of the launches that wrote it."""
    folders = NanotronDirs(dirs)
    for path in (folders.checkpoints, folders.losses):
        if path.exists():
            path.rename(folder / path.name)


ENGINE = Engine(
    name="nanotron",
    module="nanotron",
    install=INSTALL,
    check="aurora_m.engines.nanotron:require_nanotron",
    # the same datatrove shards (the kind's own data step); training in nanotron, exported back to transformers
    runners={"pretrain": {"train": "aurora_m.engines.nanotron.runner:run_train_step"}},
    arguments="aurora_m.engines.nanotron.arguments:ParallelismArguments",
    checkpoints=checkpoints,
    set_aside=set_aside,
    convert="aurora_m.engines.nanotron.convert:add_convert_commands",
    help="nanotron: tensor x pipeline x data parallel CAP and CAT (GPU nodes)",
)
