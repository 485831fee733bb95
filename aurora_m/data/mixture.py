"""The collator of packed training windows (the stream of :mod:`aurora_m.data.stream` and the held-out windows
of :mod:`aurora_m.train.monitor`): every window is full length, so labels are the inputs."""

from __future__ import annotations


def packed_collator(features):
    """Packed blocks are all full length: labels are the inputs (EOS included, nothing padded)."""
    import torch

    ids = torch.stack([torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features])
    return {"input_ids": ids, "labels": ids.clone()}
