"""Imported at interpreter start when tools/nanotron_cpu/shim is on PYTHONPATH: nanotron's CUDA-only imports on a CPU.

- triton, grouped_gemm and the flash-attn modules the dense GPTBigCode path never calls (rotary, MoE, ring
  attention) become modules whose every attribute is a stand-in: importing them works, calling them is never
  reached (a call would return a MagicMock, not a silent wrong number: the checks compare logits and losses);
- the flash-attn functions it does call (varlen attention, layer norm) are real, in plain PyTorch (``flash_attn/``);
- the torch.cuda bookkeeping calls of the trainer (set_device, memory statistics, synchronize) do nothing.
"""

import importlib.abc
import importlib.machinery
import sys
import types
from unittest import mock


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = mock.MagicMock(name=f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    PREFIXES = (
        "triton",
        "grouped_gemm",
        "flash_attn_2_cuda",
        "flash_attn.layers",
        "flash_attn.modules",
        "flash_attn.ops.triton.rotary",
        "flash_attn.ops.triton.cross_entropy",
    )

    def find_spec(self, name, path, target=None):
        if any(name == p or name.startswith(p + ".") for p in self.PREFIXES):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _StandInFinder())


def _returning(value):
    # one function object per name: torch.compile's trace rules refuse one object registered under two names
    def stand_in(*args, **kwargs):
        return value

    return stand_in


import torch  # noqa: E402 - after the finder, so that nothing torch imports meets a missing triton first

for _name in ("set_device", "synchronize", "empty_cache", "reset_peak_memory_stats", "reset_max_memory_allocated"):
    setattr(torch.cuda, _name, _returning(None))
for _name in ("memory_allocated", "max_memory_allocated", "max_memory_reserved", "memory_reserved"):
    setattr(torch.cuda, _name, _returning(0))
torch.cuda.device = lambda device: device
