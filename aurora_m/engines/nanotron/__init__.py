"""The nanotron engine: 3D-parallel (TP x PP x DP) CAP and CAT from the same stage YAML.

This package is the only place that imports nanotron, and only inside functions (:func:`require_nanotron`):
the package and the test suite work without it. What runs on a CPU here, without nanotron: checkpoint
conversion both ways (:mod:`.convert`, safetensors written directly), a plain-PyTorch forward pass over the
nanotron-layout tensors (:mod:`.reference`), and the emission of nanotron's YAML (:mod:`.config`), checked
against the config schema recorded from the pinned commit (:mod:`.schema`). What needs nanotron and a GPU:
the GPTBigCode model (:mod:`.model`) and the torchrun entry point (:mod:`.entry`).
"""

from __future__ import annotations

# The nanotron source commit this engine was written and checked against (github.com/huggingface/nanotron):
# its config schema is recorded in tests/fixtures/nanotron/schema.json.
PINNED_COMMIT = "2411b022a75fb7f7561a1bb4166706da5e1b76de"
INSTALL = (f"install nanotron from source at commit {PINNED_COMMIT[:12]} on the GPU nodes, beside the cluster's "
           "torch and flash-attn: git clone https://github.com/huggingface/nanotron && cd nanotron && "
           f"git checkout {PINNED_COMMIT} && pip install --no-deps -e . && pip install dacite 'numpy<2' "
           "(PyPI's nanotron 0.4 does not import; see README, 'nanotron engine')")


def require_nanotron():
    """Import nanotron, or one line naming the install steps (a RecipeError: exit code 2, no traceback)."""
    from ...errors import RecipeError

    try:
        import nanotron
        from nanotron.config import Config  # noqa: F401 - PyPI 0.4 fails here (circular import)
    except ImportError as err:
        raise RecipeError(None, "engine", f"nanotron is not importable here ({err}): {INSTALL}") from None
    return nanotron
