"""flash-attn as the dense GPTBigCode path of nanotron calls it, in plain PyTorch (CPU port only)."""

__version__ = "2.6.3"  # what nanotron logs; the semantics are flash-attn 2's

from . import bert_padding, flash_attn_interface  # noqa: F401
from .flash_attn_interface import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache  # noqa: F401
