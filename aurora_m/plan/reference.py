"""The default MFU: the paper's own run, inferred from what it reports (../shared/reference/paper.md).

Aurora-M trained CAP (377B tokens) and CAT (58B tokens) at 2048 tokens per sequence on LUMI, 32 nodes
x 4 AMD MI250X (= 256 GCDs, 191.5 dense bf16 TFLOPS each), in 48 days of training (74 with downtime),
StarCoderPlus' architecture (GPTBigCode, 40 layers x 6144, 48 heads, multi-query, n_inner 24576,
vocabulary 49152). MFU = model FLOPs of those tokens / (48 days x 256 x 191.5 TFLOPS). The paper says
"about 20%"; this is the same arithmetic with this module's FLOPs per token. A plan with the default
MFU therefore reproduces the paper's 48 days for the paper's cluster by construction: the check it gives
is of the rest (tokens, steps, memory), not of the days.
"""

from __future__ import annotations

from .accelerators import ACCELERATORS
from .flops import training_flops_per_token
from .shape import ModelShape

PAPER_TOKENS = 377e9 + 58e9  # CAP + CAT
PAPER_TRAINING_DAYS = 48
PAPER_GPUS = 256  # 128 MI250X, two GCDs each
PAPER_SEQ_LENGTH = 2048
PAPER_SHAPE = ModelShape(n_layer=40, n_embd=6144, n_head=48, n_inner=24576, vocab=49152, n_positions=2048)


def paper_mfu() -> tuple[float, str]:
    """(MFU, the arithmetic as one line)."""
    per_token = training_flops_per_token(PAPER_SHAPE, PAPER_SEQ_LENGTH)
    peak = ACCELERATORS["mi250x-gcd"].peak_tflops * 1e12
    seconds = PAPER_TRAINING_DAYS * 86400
    mfu = PAPER_TOKENS * per_token / (seconds * PAPER_GPUS * peak)
    text = (
        f"default MFU {mfu:.1%}: the paper's run, {PAPER_TOKENS / 1e9:.0f}B tokens (CAP 377B + CAT 58B) x "
        f"{per_token / 1e9:.1f} GFLOP/token / ({PAPER_TRAINING_DAYS} days x {PAPER_GPUS} MI250X GCDs x "
        f"{peak / 1e12:.1f} TFLOPS)"
    )
    return mfu, text
