"""Streaming (image, label vector) pairs from the Parquet shards of a prepared data set.

The unit of work is a row group: each epoch, the row groups of a split are put in one seeded
order and dealt out round-robin to every (distributed rank, DataLoader worker), so no two
readers share a row; each reader shuffles its rows through a buffer.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from stargan_core.data.manifest import manifest_url, read_manifest
from stargan_core.distributed import World
from stargan_core.domains import DomainSpec
from stargan_core.io.images import decode_rgb
from stargan_core.io.sample import DataFormatError
from stargan_core.preprocessing import Preprocessing
from stargan_core.storage import filesystem, join


class ShardDataset(IterableDataset):
    """One epoch of (image in [-1, 1], label vector of `spec` for `label_set`) per iteration.

    Call `set_epoch` between epochs for a new order. Works with any number of DataLoader workers
    and distributed ranks (torchrun's, from the environment, unless given).
    """

    def __init__(
        self,
        url: str,
        spec: DomainSpec,
        split: str = "train",
        image_size: int | None = None,
        label_set: int = 0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        storage_options: dict[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.url = manifest_url(str(url)).rsplit("/", 1)[0]
        self.manifest = read_manifest(self.url, storage_options)
        if split not in self.manifest["splits"]:
            raise DataFormatError(f"{self.url} has no '{split}' split "
                                  f"(it has: {', '.join(self.manifest['splits'])})")
        self.unit_rows = {(shard["path"], group): rows for shard in self.manifest["shards"]
                          if shard["split"] == split
                          for group, rows in enumerate(shard["row_groups"])}
        self.units = list(self.unit_rows)
        self.rows = self.manifest["splits"][split]["rows"]
        self.spec, self.label_set = spec, label_set
        labels = spec.label_sets[label_set]
        self.columns = ["image", *([labels.category] if labels.one_hot else labels.domains)]
        missing = [c for c in self.columns if c != "image" and c not in
                   self.manifest["label_columns"]]
        if missing:
            raise DataFormatError(f"{self.url} has no label column {', '.join(missing)} "
                                  f"(it has: {', '.join(self.manifest['label_columns'])})")
        self.image_size = image_size or self.manifest["image"]["size"]
        self.transform = Preprocessing("center", self.image_size)  # squares already
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self.storage_options = storage_options
        if rank is None or world_size is None:  # torchrun's, read in the main process
            world = World.from_environment()
            rank, world_size = world.rank, world.size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.rows

    def whole(self) -> ShardDataset:
        """This data set as one process reads it, all of it, whatever the ranks: to load
        it into memory on every process."""
        whole = copy.copy(self)
        whole.rank, whole.world_size = 0, 1
        return whole

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_units(self, epoch: int) -> list[tuple[str, int]]:
        units = list(self.units)
        if self.shuffle_buffer > 1:
            # The same order on every reader, so that dealing it out leaves no overlap.
            random.Random(self.seed * 100_003 + epoch).shuffle(units)
        return units

    def batches(self, epoch: int, batch_size: int, workers: int) -> int:
        """The full batches a DataLoader of `workers` workers gives in `epoch` on this rank:
        each worker reads its own row groups and drops its last partial batch."""
        workers = max(workers, 1)
        units, readers = self._epoch_units(epoch), self.world_size * workers
        first = self.rank * workers
        return sum(sum(self.unit_rows[u] for u in units[r::readers]) // batch_size
                   for r in range(first, first + workers))

    def _reader(self) -> tuple[int, int]:
        """(this reader's number, the number of readers) over ranks x DataLoader workers."""
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        return self.rank * workers + worker_id, self.world_size * workers

    def _rows(self, units: list[tuple[str, int]]) -> Iterator[dict[str, Any]]:
        fs, base = filesystem(self.url, self.storage_options)
        for path, group in units:
            with fs.open(join(base, path), "rb") as f:
                table = pq.ParquetFile(f).read_row_group(group, columns=self.columns)
            yield from table.to_pylist()

    def _item(self, row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        image = decode_rgb(row.pop("image")["bytes"])
        row.pop("image_id", None)
        return self.transform(image), self.spec.label_vector(row, self.label_set)

    def iter_with_ids(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        """(image, labels, image id) of the whole split in shard order, unshuffled."""
        columns, self.columns = self.columns, [*self.columns, "image_id"]
        try:
            for row in self._rows(list(self.units)):
                image_id = row["image_id"]
                yield *self._item(row), image_id
        finally:
            self.columns = columns

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        reader, readers = self._reader()
        rows = self._rows(self._epoch_units(self.epoch)[reader::readers])
        if self.shuffle_buffer <= 1:
            yield from map(self._item, rows)
            return
        rng = random.Random((self.seed * 100_003 + self.epoch) * 1009 + reader)
        buffer: list[dict[str, Any]] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], row = row, buffer[i]
            yield self._item(row)
        rng.shuffle(buffer)
        yield from map(self._item, buffer)
