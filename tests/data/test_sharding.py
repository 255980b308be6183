import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, TensorDataset, WeightedRandomSampler

from trainwell import DataError
from trainwell.data import TensorLoader
from trainwell.data.sharding import StridedSampler, shard_loader


def test_a_strided_sampler_gives_each_sample_to_one_process():
    shares = [list(StridedSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for share in shares for i in share) == list(range(10)) and [
        len(StridedSampler(10, rank, 3)) for rank in range(3)
    ] == [
        4,
        3,
        3,
    ]


def test_a_tensor_loader_shard_takes_rank_0s_seed():
    loader = TensorLoader(torch.zeros(10, 1), torch.zeros(10), batch_size=2, seed=9)
    share = shard_loader(loader, "train_loader", rank=1, world_size=2, sampler_seed=0, train=True, seed=4)
    assert share.seed == 4 and loader.seed == 9 and share is not loader


def test_a_dataloader_is_rebuilt_around_a_distributed_sampler():
    dataset = TensorDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    loader = DataLoader(dataset, batch_size=2, shuffle=True)
    shards = [shard_loader(loader, "train_loader", rank, 2, sampler_seed=7, train=True) for rank in range(2)]
    for rank, shard in enumerate(shards):
        assert isinstance(shard.sampler, DistributedSampler) and shard.dataset is dataset
        assert (shard.sampler.rank, shard.sampler.num_replicas, shard.sampler.seed, shard.sampler.shuffle) == (
            rank,
            2,
            7,
            True,
        )
        assert shard.batch_size == 2 and len(shard) == 3
    seen = [y for shard in shards for _, batch in shard for y in batch.tolist()]
    assert sorted(seen) == list(range(10))
    dropping = DataLoader(dataset, batch_size=2, shuffle=False, drop_last=True)
    shard = shard_loader(dropping, "train_loader", 0, 2, sampler_seed=7, train=True)
    assert shard.drop_last and not shard.sampler.shuffle and [y.tolist() for _, y in shard] == [[0, 2], [4, 6]]
    validation = DataLoader(dataset, batch_size=4)
    parts = [shard_loader(validation, "val_loader", rank, 3, sampler_seed=0, train=False) for rank in range(3)]
    assert [[y.tolist() for _, y in part] for part in parts] == [[[0, 3, 6, 9]], [[1, 4, 7]], [[2, 5, 8]]]
    already = DataLoader(dataset, batch_size=2, sampler=DistributedSampler(dataset, num_replicas=2, rank=1))
    assert shard_loader(already, "train_loader", 1, 2, sampler_seed=0, train=True) is already


def _stream():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([(torch.zeros(1), 0)])

    return DataLoader(Stream(), batch_size=1)


@pytest.mark.parametrize(
    ("loader", "message"),
    [
        (
            [(torch.zeros(2, 1), torch.zeros(2))],
            "train_loader is a list, which trainwell cannot share out between 2 processes",
        ),
        (None, "reads an IterableDataset"),
        (
            DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2, sampler=WeightedRandomSampler([1.0] * 8, 8)),
            "uses its own sampler \\(WeightedRandomSampler.*give the DataLoader a torch.utils.data.DistributedSampler",
        ),
        (
            TensorLoader(torch.zeros(3, 1), torch.zeros(3), batch_size=2),
            "world size 3 is larger than the 2 batches of train_loader",
        ),
    ],
)
def test_loaders_that_cannot_be_sharded_are_refused_saying_what_to_pass(loader, message):
    loader = _stream() if loader is None else loader
    world = 3 if isinstance(loader, TensorLoader) else 2
    with pytest.raises(DataError, match=message):
        shard_loader(loader, "train_loader", 0, world, sampler_seed=0, train=True)


def test_a_world_larger_than_the_batches_or_validation_samples_is_refused():
    loader = TensorLoader(torch.zeros(64, 1), torch.zeros(64), batch_size=32)
    with pytest.raises(
        DataError,
        match=r"world size 4 is larger than the 2 batches of train_loader \(batch_size=32 per process\).*Start at most 2 processes",
    ):
        shard_loader(loader, "train_loader", 0, 4, sampler_seed=0, train=True)
    assert len(shard_loader(loader, "train_loader", 0, 2, sampler_seed=0, train=True)) == 1
    with pytest.raises(DataError, match="world size 4 is larger than the 3 samples of val_loader"):
        shard_loader(TensorLoader(torch.zeros(3, 1), torch.zeros(3)), "val_loader", 0, 4, sampler_seed=0, train=False)
