"""Which training samples each process takes at each step, and the loader that fetches them.

One optimizer step consumes one *effective batch* of ``batch_size`` samples (the config's
``batch_size``), whatever the number of processes and accumulation steps: the epoch's
order is a permutation seeded by (seed, epoch) -- the very order a single process has
always used -- global batch ``b`` is ``order[b*B:(b+1)*B]`` (the last partial batch is
dropped), and it is cut into ``world_size * grad_accum_steps`` equal micro-batches.
Process ``r`` takes micro-batch ``a * world_size + r`` at accumulation step ``a``. So the
processes see disjoint samples, and 2 processes at accumulation 1 take exactly what 1
process at accumulation 2 takes, micro-batch by micro-batch (same loss, same BatchNorm
statistics). Resuming at batch ``k`` of an epoch continues the same order there.

Augmentation randomness: a single process without workers draws from the dataset's one
generator, reseeded each epoch (as it always has). With several processes or loader
workers, each sample's generator is seeded from (seed, epoch, index) instead, so a sample's
augmentation does not depend on which process or worker makes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from picosam3_train.data import CropDataset, collate


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch (the same for every process)."""
    return np.random.default_rng(seed * 1000 + epoch).permutation(num_samples)


@dataclass(frozen=True)
class BatchPlan:
    """The split of each effective batch into per-process micro-batches."""

    num_samples: int
    batch_size: int  # effective batch: all processes, all accumulation steps
    world_size: int = 1
    rank: int = 0
    grad_accum_steps: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        parts = self.world_size * self.grad_accum_steps
        if self.batch_size < parts or self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of world_size x grad_accum_steps = "
                f"{self.world_size} x {self.grad_accum_steps}"
            )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world_size - 1}")

    @property
    def micro_batch(self) -> int:
        return self.batch_size // (self.world_size * self.grad_accum_steps)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.num_samples // self.batch_size)

    def micro_batches(self, epoch: int, batch: int, order: np.ndarray | None = None) -> list[np.ndarray]:
        """Sample indices of the ``grad_accum_steps`` micro-batches of this process in batch ``batch``."""
        order = epoch_order(self.num_samples, self.seed, epoch) if order is None else order
        chunk = order[batch * self.batch_size : (batch + 1) * self.batch_size]
        m = self.micro_batch
        return [
            chunk[(a * self.world_size + self.rank) * m : (a * self.world_size + self.rank + 1) * m]
            for a in range(self.grad_accum_steps)
        ]


@dataclass
class Jitter:
    """The box/scale jitter the loop wants now (it tightens them in the final phase)."""

    box: float
    scale: float


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches, epoch after epoch from batch ``start`` of ``epoch``
    on, as sample keys ``(index, epoch, box_jitter, scale_jitter)``; the jitter is read when a
    batch is drawn. It never ends: the training loop stops drawing when the run is over, so
    the loader's workers live for the whole run instead of restarting every epoch."""

    def __init__(self, plan: BatchPlan, epoch: int, start: int, jitter: Jitter):
        self.plan, self.epoch, self.start, self.jitter = plan, epoch, start, jitter

    def __iter__(self) -> Iterator[list[tuple[int, int, float, float]]]:
        for epoch in itertools.count(self.epoch):
            order = epoch_order(self.plan.num_samples, self.plan.seed, epoch)
            for batch in range(self.start if epoch == self.epoch else 0, self.plan.steps_per_epoch):
                for micro in self.plan.micro_batches(epoch, batch, order):
                    yield [(int(i), epoch, self.jitter.box, self.jitter.scale) for i in micro]


class KeyedSamples(torch.utils.data.Dataset):
    """``CropDataset`` addressed by sample key; ``per_sample_seed`` seeds each sample's
    augmentation from (seed, epoch, index) (see the module docstring)."""

    def __init__(self, dataset: CropDataset, seed: int, per_sample_seed: bool):
        self.dataset, self.seed, self.per_sample_seed = dataset, seed, per_sample_seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, float, float]) -> dict:
        index, epoch, box_jitter, scale_jitter = key
        if self.per_sample_seed:
            self.dataset.reseed([self.seed, epoch, index])
        self.dataset.box_jitter, self.dataset.scale_jitter = box_jitter, scale_jitter
        return self.dataset[index]


def run_loader(samples: KeyedSamples, plan: BatchPlan, epoch: int, start: int, jitter: Jitter,
               num_workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """The micro-batches of this process (collated dicts of tensors) from batch ``start`` of ``epoch``."""
    return torch.utils.data.DataLoader(
        samples,
        batch_sampler=MicroBatchSampler(plan, epoch, start, jitter),
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
    )
