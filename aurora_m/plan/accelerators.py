"""The accelerators a plan knows: memory per device and dense bf16 peak, from the vendors' datasheets.

One row per device as a rank sees it: an AMD MI250X is two graphics compute dies (GCDs), each its own
device with half the package's memory and peak (LUMI's 128 MI250X are 256 ranks). Peaks are dense
(no 2:4 sparsity) bf16 tensor/matrix-core figures; memory is the HBM capacity the vendor lists (HBM is
sized in binary units: "80 GB" of HBM3 is 80 GiB). Any other device: ``--gpu-memory`` and ``--peak-tflops``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import RecipeError


@dataclass(frozen=True)
class Accelerator:
    name: str
    memory_gib: float
    peak_tflops: float  # dense bf16
    source: str = ""


ACCELERATORS = {
    a.name: a
    for a in (
        # NVIDIA H100 datasheet (SXM5): 80 GB HBM3, BF16 Tensor Core 1,979 TFLOPS "with sparsity" -> 989 dense
        Accelerator("h100", 80, 989.0, "NVIDIA H100 Tensor Core GPU datasheet, SXM"),
        # same datasheet, PCIe: 80 GB HBM2e, 1,513 with sparsity -> 756 dense
        Accelerator("h100-pcie", 80, 756.0, "NVIDIA H100 Tensor Core GPU datasheet, PCIe"),
        # NVIDIA H200 datasheet (SXM): 141 GB HBM3e, BF16 1,979 with sparsity -> 989 dense
        Accelerator("h200", 141, 989.0, "NVIDIA H200 Tensor Core GPU datasheet, SXM"),
        # NVIDIA A100 datasheet: 80 GB HBM2e (40 GB model: HBM2), BF16 Tensor Core 312 TFLOPS dense
        Accelerator("a100-80gb", 80, 312.0, "NVIDIA A100 Tensor Core GPU datasheet"),
        Accelerator("a100-40gb", 40, 312.0, "NVIDIA A100 Tensor Core GPU datasheet"),
        # NVIDIA L40S datasheet: 48 GB GDDR6, BF16 Tensor Core 362.05 dense (733 with sparsity)
        Accelerator("l40s", 48, 362.05, "NVIDIA L40S datasheet"),
        # AMD Instinct MI250X datasheet: 128 GB HBM2e, 383 TFLOPS peak bf16 per package of two GCDs
        Accelerator("mi250x-gcd", 64, 191.5, "AMD Instinct MI250X datasheet, per GCD (half the package)"),
        # AMD Instinct MI300X datasheet: 192 GB HBM3, 1,307.4 TFLOPS peak bf16 dense
        Accelerator("mi300x", 192, 1307.4, "AMD Instinct MI300X datasheet"),
    )
}
ALIASES = {"h100-sxm": "h100", "a100": "a100-80gb", "mi250x": "mi250x-gcd"}


def accelerator(kind: str | None, memory_gib: float | None = None, peak_tflops: float | None = None) -> Accelerator:
    """A row of the table, or a device described by ``--gpu-memory`` and ``--peak-tflops`` (both given)."""
    if (memory_gib is None) != (peak_tflops is None):
        raise RecipeError(None, "--gpu-memory", "give --gpu-memory and --peak-tflops together (one device's figures)")
    if memory_gib is not None:
        if not (0 < memory_gib < math.inf and 0 < peak_tflops < math.inf):  # nan fails both comparisons
            raise RecipeError(
                None,
                "--gpu-memory",
                f"--gpu-memory and --peak-tflops must be positive numbers, got {memory_gib}, {peak_tflops}",
            )
        return Accelerator(kind or "custom", float(memory_gib), float(peak_tflops), "given on the command line")
    known = ", ".join(ACCELERATORS)
    if kind is None:
        raise RecipeError(
            None, "--gpu", f"name the accelerator (one of {known}), or give --gpu-memory and --peak-tflops"
        )
    name = ALIASES.get(kind.lower(), kind.lower())
    if name not in ACCELERATORS:
        raise RecipeError(
            None,
            "--gpu",
            f"unknown GPU kind {kind!r} (known: {known}; for another give --gpu-memory and --peak-tflops)",
        )
    return ACCELERATORS[name]
