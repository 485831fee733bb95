"""The plan as a readable table with its assumptions under it, and as JSON (``--json FILE``)."""

from __future__ import annotations

from dataclasses import asdict

from ..io import human_size as size
from .build import Cluster, StagePlan
from .data_cost import DEFAULT_BYTES_PER_TOKEN, DEFAULT_TOKENS_PER_CORE_SECOND
from .memory import USABLE


def _num(n, fmt=",") -> str:
    return "-" if n is None else format(n, fmt)


def render(recipe: str, plans: list[StagePlan], cluster: Cluster, mfu_text: str, assumptions: list[str]) -> str:
    d = cluster.device
    lines = [
        f"plan of {recipe} on {cluster.gpus} x {d.name} ({d.memory_gib:g} GiB, {d.peak_tflops:g} dense bf16 TFLOPS "
        f"each) at MFU {cluster.mfu:.1%}",
        "",
        f"{'stage':<10} {'tokens':>17} {'steps':>8} {'global batch':>13} {'PFLOP/step':>11} {'days':>7} "
        f"{'checkpoint':>10} {'ckpt disk':>10}",
    ]
    for p in plans:
        if p.kind in ("eval", "publish"):
            continue
        days = "-" if p.days is None else f"{p.days:.2f}" if p.days < 10 else f"{p.days:.1f}"
        batch = "-" if p.global_batch is None else f"{p.global_batch} x {p.seq_length}"
        lines.append(
            f"{p.name:<10} {_num(p.tokens):>17} {_num(p.steps):>8} {batch:>13} "
            f"{_num(p.flops_per_step and p.flops_per_step / 1e15, ',.3g'):>11} {days:>7} "
            f"{size(p.checkpoint_bytes):>10} {size(p.checkpoint_disk_bytes):>10}"
        )
    total = sum(p.days for p in plans if p.days)
    lines += [f"{'all':<10} {'':>17} {'':>8} {'':>13} {'':>11} {total:>7.1f}", ""]
    for p in plans:
        if not p.launches:
            continue
        on = "on" if p.launches[0].checkpointing else "off"
        lines += [
            f"{p.name}: memory per rank (GiB) at the YAML's per-device batch {p.per_device}, activation checkpointing "
            f"{on} (as the YAML); 'other': checkpointing {'off' if on == 'on' else 'on'}",
            f"  {'launch':<22} {'weights':>8} {'grads':>8} {'optim':>8} {'activ':>8} {'buffers':>8} {'total':>8} "
            f"{'fits':>5} {'other':>8}  largest micro-batch that fits x accumulation",
        ]
        for x in p.launches:
            g = x.parts_gib
            best = f"{x.best_micro_batch} x {x.best_accumulation}" if x.best_micro_batch else "none fits"
            lines.append(
                f"  {x.name:<22} {g['weights']:>8.2f} {g['gradients']:>8.2f} {g['optimizer']:>8.2f} "
                f"{g['activations']:>8.2f} {g['buffers']:>8.2f} {g['total']:>8.2f} {'yes' if x.fits else 'no':>5} "
                f"{x.other_checkpointing_gib:>8.2f}  {best}"
            )
        lines.append("")
    for p in plans:
        if p.data is None:
            continue
        cores = cluster.cpu_cores
        wall = f", {p.data.core_hours / cores:,.1f} h on {cores} cores" if cores else ""
        lines.append(
            f"{p.name}: data step: read {size(p.data.bytes_to_read)}, {p.data.core_hours:,.1f} core-hours{wall}, "
            f"shards {size(p.data.shard_bytes)}"
        )
        for s in p.data.sources:
            least = "" if s.bytes_known else " (share)"
            lines.append(
                f"  {s.name:<22} share {s.share:6.1%}  read {size(s.bytes_to_read):>9}{least:<11} "
                f"{s.core_hours:>10,.1f} core-h  shards {size(s.shard_bytes):>9}  [{s.origin}]"
            )
        lines.append("")
    for p in plans:
        if p.eval is None:
            continue
        lines.append(f"{p.name}: {p.eval['variants']} models")
        for suite, figures in p.eval.items():
            if isinstance(figures, dict):
                text = ", ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in figures.items())
                lines.append(f"  {suite}: {text}")
        lines.append("")
    lines += ["assumptions:", *(f"- {a}" for a in standard_assumptions(mfu_text) + assumptions)]
    for p in plans:
        lines += [f"- {p.name}: {n}" for n in p.notes + (p.data.notes if p.data else [])]
    return "\n".join(lines)


def standard_assumptions(mfu_text: str) -> list[str]:
    return [
        mfu_text,
        "days = steps x model FLOPs per step / (MFU x peak x GPUs); model FLOPs = 3 x forward matrix products, "
        "attention's full s x s included (aurora_m/plan/flops.py); recomputation is not model FLOPs",
        f"a launch fits when weights + gradients + optimizer + activations + buffers <= {USABLE:.0%} of the "
        "device's memory; activations from the tensors autograd saves (aurora_m/plan/activations.py), buffers "
        "include the peak's recomputed layer and the loss's logits gradient",
        "a checkpoint holds the weights as stored and fp32 master weights + AdamW moments (12 bytes a parameter "
        "for 16-bit models); disk = save_total_limit checkpoints + the final model",
        f"data step without a rehearsal: the benchmark's {DEFAULT_TOKENS_PER_CORE_SECOND:,} tokens/s per core and "
        f"{DEFAULT_BYTES_PER_TOKEN} bytes per token (docs/benchmarks.md), every document kept: a Hub source of "
        "unknown size is shown at what its share takes read once (share); --rehearsal FILE uses measured figures",
    ]


PLAN_WRITER = "aurora-m plan"


def as_json(recipe: str, plans: list[StagePlan], cluster: Cluster, mfu_text: str, assumptions: list[str]) -> dict:
    stages = []
    for p in plans:
        row = asdict(p)
        row["data"] = (
            None
            if p.data is None
            else {
                "bytes_to_read": p.data.bytes_to_read,
                "core_hours": round(p.data.core_hours, 3),
                "shard_bytes": p.data.shard_bytes,
                "sources": [asdict(s) for s in p.data.sources],
                "notes": p.data.notes,
            }
        )
        stages.append(row)
    return {
        "written_by": PLAN_WRITER,  # how --json knows a file it may replace: a plan it wrote before
        "recipe": recipe,
        "cluster": {
            "gpus": cluster.gpus,
            "gpu": asdict(cluster.device),
            "mfu": cluster.mfu,
            "cpu_cores": cluster.cpu_cores,
            "global_batch": cluster.global_batch,
        },
        "stages": stages,
        "assumptions": standard_assumptions(mfu_text) + assumptions,
    }
