"""The streaming reader over prepared shards: every row once per epoch, however it is split."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from stargan_core.data.manifest import manifest_spec, read_manifest
from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.data.shards import ShardDataset
from stargan_core.domains import DomainSpec
from stargan_core.io.images import ImageRule
from stargan_core.io.sample import DataFormatError
from tests.conftest import training_set


@pytest.fixture(scope="module")
def prepared(celeba_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "celeba" / "v1"
    prepare_dataset(PrepareConfig(str(celeba_root), str(out), rule=ImageRule(32),
                                  rows_per_shard=30, row_group_size=7))
    return str(out)


def keys(items) -> list[bytes]:
    """One key per image, to tell rows apart."""
    return [x.numpy().tobytes() for x, _ in items]


def test_one_epoch_yields_every_row_once_with_its_labels(prepared):
    spec = manifest_spec(read_manifest(prepared))
    ds = ShardDataset(prepared, spec, "train", image_size=32, shuffle_buffer=0)
    items = list(ds)
    assert len(items) == len(ds) == 108
    assert len(set(keys(items))) == 108
    x, c = items[0]
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert c.shape == (5,)
    males = sum(int(c[spec.domains.index("Male")]) for _, c in items)
    assert males == read_manifest(prepared)["splits"]["train"]["labels"]["Male"]["1"]


def test_workers_and_ranks_split_the_rows_without_overlap(prepared):
    spec = DomainSpec.celeba()
    everything = set(keys(ShardDataset(prepared, spec, shuffle_buffer=0)))
    seen: list[bytes] = []
    for rank in range(2):
        ds = ShardDataset(prepared, spec, shuffle_buffer=16, seed=5, rank=rank, world_size=2)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        part = keys(loader)
        assert 0 < len(part) < len(everything)
        seen += part
    assert len(seen) == len(set(seen)) == len(everything)
    assert set(seen) == everything


def test_shuffle_changes_the_order_with_the_epoch_not_the_rows(prepared):
    ds = ShardDataset(prepared, DomainSpec.celeba(), shuffle_buffer=20, seed=1)
    first = keys(ds)
    assert keys(ds) == first  # same epoch, same order
    ds.set_epoch(1)
    second = keys(ds)
    assert second != first and sorted(second) == sorted(first)
    assert first != keys(ShardDataset(prepared, DomainSpec.celeba(), shuffle_buffer=0))


def test_resizes_to_the_training_size(prepared):
    x, _ = next(iter(ShardDataset(prepared, DomainSpec.celeba(), image_size=16)))
    assert x.shape == (3, 16, 16)


def test_errors_name_what_is_missing(prepared, tmp_path):
    with pytest.raises(DataFormatError, match="no manifest.json at .*stargan preprocess"):
        read_manifest(str(tmp_path))
    with pytest.raises(DataFormatError, match="no 'validation' split"):
        ShardDataset(prepared, DomainSpec.celeba(), "validation")
    with pytest.raises(DataFormatError, match="no label column expression"):
        ShardDataset(prepared, DomainSpec.rafd())


def test_streams_from_s3(s3, celeba_root):
    url = s3.url("datasets/celeba/v1")
    prepare_dataset(PrepareConfig(s3.upload(celeba_root, "raw"), url, rule=ImageRule(32),
                                  rows_per_shard=50))
    ds = ShardDataset(url + "/manifest.json", DomainSpec.celeba(), "test", shuffle_buffer=0)
    batch = next(iter(DataLoader(ds, batch_size=12, num_workers=2)))
    assert batch[0].shape == (12, 3, 32, 32) and torch.isfinite(batch[0]).all()


def test_training_streams_shards_across_epochs(prepared, tmp_path):
    from stargan_core.config import TrainConfig
    from stargan_core.train import train

    spec = DomainSpec.celeba()
    seen = []

    class Counting(ShardDataset):
        def set_epoch(self, epoch: int) -> None:
            seen.append(epoch)
            super().set_epoch(epoch)

    ds = Counting(prepared, spec, image_size=16, shuffle_buffer=8)
    config = TrainConfig(image_size=16, g_conv_dim=4, d_conv_dim=4, g_repeat_num=1,
                         d_repeat_num=4, batch_size=32, n_critic=1, num_workers=0,
                         num_iters=7, num_iters_decay=0, checkpoint_every=5)
    data = training_set(spec, [ds], size=config.image_size)
    result = train(config, data, tmp_path)  # 108 rows: 3 batches an epoch
    assert result.step == 7 and seen == [0, 1, 2]
    # Resumed from step 5: in epoch 1 (steps 3-5) past its first two batches, then epoch 2.
    seen.clear()
    (tmp_path / "checkpoints" / "step-0000007.ckpt").unlink()
    assert train(config, data, tmp_path).step == 7 and seen == [1, 2]
