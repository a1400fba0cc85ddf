"""Endless training batches that a resumed run repeats exactly: batch k is fixed by the seed
and k, for map-style data sets (raw folders in memory) and streaming ones (shards) alike."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from stargan_core.config import TrainConfig
from stargan_core.distributed import ONE_PROCESS, World


class StepSampler(Sampler[list[int]]):
    """Endless batches of indices; batch k is fixed by (seed, k), so resuming at step k repeats
    exactly the batches that an uninterrupted run would have drawn. With several training
    processes, each takes its part of the same global batch."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int = 0,
                 world: World = ONE_PROCESS) -> None:
        if size < batch_size:
            raise ValueError(f"data set of {size} images is smaller than a batch ({batch_size})")
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start_step
        self.world, self.local = world, world.local_batch(batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.size // self.batch_size  # the last partial batch is dropped
        for step in itertools.count(self.start):
            epoch, k = divmod(step, per_epoch)
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(
                self.seed * 100_003 + epoch))
            first = k * self.batch_size + self.world.rank * self.local
            yield order[first:first + self.local].tolist()


def endless_batches(ds: Dataset, config: TrainConfig, seed: int, start: int,
                    pin_memory: bool = False, world: World = ONE_PROCESS
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches from step `start` on: this process's part of each global batch.

    A map-style data set gets the StepSampler, so a resumed run sees exactly the batches of an
    uninterrupted one. A streaming data set (shards) goes epoch by epoch, each epoch's order a
    function of its number; a resumed run finds the epoch that holds step `start` from the
    shards' row counts and reads past the batches already trained on, so it too sees exactly
    the batches of an uninterrupted run. Each training process reads its own shards.
    """
    batch_size = world.local_batch(config.batch_size)
    if isinstance(ds, IterableDataset):
        if len(ds) < config.batch_size:
            raise ValueError(f"data set of {len(ds)} images is smaller than a batch "
                             f"({config.batch_size})")
        first, skip = 0, start
        while skip and skip >= (n := ds.batches(first, batch_size, config.num_workers)) and n:
            first, skip = first + 1, skip - n
        for epoch in itertools.count(first):
            ds.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=batch_size, drop_last=True,
                                num_workers=config.num_workers, pin_memory=pin_memory,
                                # Its own generator: the global RNG stays the training's.
                                generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            yielded = 0
            for batch in itertools.islice(loader, skip, None):
                yielded += 1
                yield batch
            if not yielded:  # each worker drops its last partial batch: all of them, here
                raise ValueError(
                    f"an epoch of {len(ds)} images gave no full batch of {batch_size}: "
                    "use fewer DataLoader workers or a smaller batch")
            skip = 0
    yield from DataLoader(
        ds, batch_sampler=StepSampler(len(ds), config.batch_size, seed, start, world),
        num_workers=config.num_workers, pin_memory=pin_memory,
        persistent_workers=config.num_workers > 0,
        # Its own generator, so that creating the loader leaves the global RNG untouched.
        generator=torch.Generator().manual_seed(seed),
    )
