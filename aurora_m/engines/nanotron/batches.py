"""The micro-batches a nanotron stage trains on: the data step's packed stream, in the transformers engine's order.

nanotron's ``run_train.py`` reads token folders through ``nanotron.data.tokenized_bytes``, which at the pinned
commit calls a ``DatatroveFolderDataset`` that only datatrove's unreleased ``nouamane/avoid-s3`` branch has
(datatrove issue #374), not the datatrove this project builds its shards with. So the engine does not use it:
the training loop is fed from the data step's sampling index (:class:`aurora_m.data.stream.PackedStream`), the
same stream, mixture and seed the transformers engine reads, so both engines train on the same sequences.

- **Order**: optimizer step s of the stage (0-based) trains stream positions ``[s*G, (s+1)*G)``, ``G`` the
  global batch (micro batch x accumulation x dp). Data-parallel rank r takes the contiguous block
  ``[s*G + r*B, s*G + (r+1)*B)`` (``B`` = micro batch x accumulation), one micro batch after another.
- **Labels**: a window of ``seq_length`` tokens is the input as it is; its labels are the window shifted by one
  with the last position masked out, which is the loss transformers computes on the same window.
- **Resume**: the stage's consumed samples, which nanotron keeps in its checkpoint metadata, give the first
  position; a resume with another global batch is refused (the positions would no longer line up).
- **Pipeline parallelism**: only the first pipeline rank reads inputs and the last reads labels; the others get
  nanotron's ``TensorPointer`` to those ranks (given by the caller, so this module runs without nanotron).
- **Consumption**: nanotron records the tokens each dataset folder gave in its checkpoint metadata; the counts
  here come from the index (one ``bincount`` per optimizer step over ``G`` rows), across all data-parallel ranks. A
  resumed launch starts from the counts that metadata holds (no pass over the index at start-up on every rank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import RecipeError


@dataclass(frozen=True)
class Shape:
    """How one optimizer step's global batch is cut: ``dp`` ranks of ``accumulation`` micro batches."""

    micro_batch: int
    accumulation: int
    dp: int

    @property
    def per_rank(self) -> int:
        return self.micro_batch * self.accumulation

    @property
    def global_batch(self) -> int:
        return self.per_rank * self.dp


def first_micro_batch(consumed_samples: int, shape: Shape, where: str) -> int:
    """The micro batch (of one rank) a stage that consumed ``consumed_samples`` carries on from."""
    if consumed_samples % shape.global_batch:
        raise RecipeError(
            where,
            "per_device_train_batch_size",
            f"the checkpoint consumed {consumed_samples} samples, not a whole number of global batches "
            f"of {shape.global_batch} (micro batch {shape.micro_batch} x accumulation "
            f"{shape.accumulation} x dp {shape.dp}): resume with the batch shape it was trained with",
        )
    return consumed_samples // shape.global_batch * shape.accumulation


class StageBatches:
    """Map-style dataset of one data-parallel rank's micro batches: item k is its k-th micro batch of the stage.

    ``stream`` is a :class:`PackedStream`; ``pointer(group_rank=rank)`` (nanotron's ``TensorPointer`` class: it
    pickles, for loader workers started by spawn) makes the placeholder for the
    pipeline rank holding an input or label this rank does not read (``reads_inputs`` / ``reads_labels``).
    """

    def __init__(
        self,
        stream,
        shape: Shape,
        dp_rank: int,
        *,
        folders: dict[str, str],
        start_training_step: int = 1,
        consumed_samples: int = 0,
        reads_inputs: bool = True,
        reads_labels: bool = True,
        pointer: Callable | None = None,
        input_rank: int = 0,
        output_rank: int = 0,
        consumed_tokens: dict[str, int] | None = None,
    ):
        if min(shape.micro_batch, shape.accumulation, shape.dp) < 1 or consumed_samples < 0:
            raise ValueError(f"{shape} and {consumed_samples} consumed samples: expected positive sizes")
        if not 0 <= dp_rank < shape.dp:
            raise ValueError(f"dp rank {dp_rank} outside 0..{shape.dp - 1}")
        self.stream, self.shape, self.dp_rank = stream, shape, dp_rank
        self.folders = folders  # source name -> the folder nanotron's config lists for it
        self.start_training_step = start_training_step
        self.reads_inputs, self.reads_labels = reads_inputs, reads_labels
        if not (reads_inputs and reads_labels) and pointer is None:
            raise ValueError("a rank that does not read inputs or labels needs a pointer factory")
        self.pointer, self.input_rank, self.output_rank = pointer, input_rank, output_rank
        self.steps = len(stream) // shape.global_batch  # whole global batches in the stream
        self.first = first_micro_batch(consumed_samples, shape, str(stream.index_path))
        self.tokens = self._consumed(consumed_samples, consumed_tokens)  # per source, all ranks, this stage

    def _consumed(self, samples: int, recorded: dict[str, int] | None) -> np.ndarray:
        """The tokens each source gave before this launch: what the checkpoint's metadata recorded per folder when
        it accounts for all ``samples`` windows, else counted from the index (a pass over ``samples`` rows)."""
        if recorded:
            tokens = np.array([int(recorded.get(self.folders.get(n, n), 0)) for n in self.stream.names])
            if tokens.sum() == samples * self.stream.seq_length:
                return tokens
        return self._count(0, samples)

    def __len__(self) -> int:
        return self.steps * self.shape.accumulation

    def positions(self, k: int) -> range:
        """The stream positions of this rank's micro batch ``k``."""
        step, micro = divmod(k, self.shape.accumulation)
        start = step * self.shape.global_batch + self.dp_rank * self.shape.per_rank + micro * self.shape.micro_batch
        return range(start, start + self.shape.micro_batch)

    def __getitem__(self, k: int) -> dict:
        import torch

        if not 0 <= k < len(self):
            raise IndexError(
                f"micro batch {k} outside the stage's {len(self)} (the stream holds {len(self.stream)} "
                f"windows: {self.steps} global batches of {self.shape.global_batch})"
            )
        batch = {}
        if self.reads_inputs or self.reads_labels:
            windows = torch.from_numpy(np.stack([self.stream[p]["input_ids"] for p in self.positions(k)]))
        if self.reads_inputs:
            batch["input_ids"] = windows
            batch["input_mask"] = torch.ones_like(windows, dtype=torch.bool)
        else:
            batch["input_ids"] = batch["input_mask"] = self.pointer(group_rank=self.input_rank)
        if self.reads_labels:
            labels = torch.zeros_like(windows)
            labels[:, :-1] = windows[:, 1:]
            mask = torch.ones_like(windows, dtype=torch.bool)
            mask[:, -1] = False  # the window's last token has no next token inside the window
            batch["label_ids"], batch["label_mask"] = labels, mask
        else:
            batch["label_ids"] = batch["label_mask"] = self.pointer(group_rank=self.output_rank)
        return batch

    def sampler(self) -> range:
        """The micro batches still to train, in order (a resumed stage starts after what it consumed)."""
        return range(self.first, len(self))

    # ------------------------------------------------------------------ what nanotron's loop calls
    def _count(self, start: int, end: int) -> np.ndarray:
        return self.stream.source_counts(start, end) * self.stream.seq_length

    def update_consumption_metrics(self, start_idx: int, end_idx: int, sequence_length: int) -> None:
        """nanotron's call after each optimizer step, with sample numbers counted from training step 1."""
        offset = (self.start_training_step - 1) * self.shape.global_batch
        self.tokens = self.tokens + self._count(start_idx - offset, end_idx - offset)

    def get_consumption_stats(self) -> dict[str, dict[str, int]]:
        return {
            self.folders.get(name, name): {"tokens": int(n)} for name, n in zip(self.stream.names, self.tokens) if n
        }
