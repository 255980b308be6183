import numpy as np
import pytest
import torch

from trainwell import DataError
from trainwell.data import TensorLoader


def _data(n=10):
    return torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n)


def test_batches_cover_every_sample_once_per_epoch():
    loader = TensorLoader(*_data(10), batch_size=4, seed=0)
    assert len(loader) == 3
    seen = torch.cat([targets for _, targets in loader])
    assert sorted(seen.tolist()) == list(range(10))
    for inputs, targets in loader:
        assert torch.equal(inputs.squeeze(1).long(), targets)


def test_drop_last():
    loader = TensorLoader(*_data(10), batch_size=4, drop_last=True, seed=0)
    assert len(loader) == 2 and [len(t) for _, t in loader] == [4, 4]


def test_no_shuffle_keeps_order():
    loader = TensorLoader(*_data(5), batch_size=2, shuffle=False)
    assert [t.tolist() for _, t in loader] == [[0, 1], [2, 3], [4]]


def test_seeded_order_is_reproducible_and_changes_per_epoch():
    first = TensorLoader(*_data(50), batch_size=50, seed=3)
    second = TensorLoader(*_data(50), batch_size=50, seed=3)
    epoch0 = next(iter(first))[1]
    assert torch.equal(epoch0, next(iter(second))[1])
    list(first)  # a complete pass moves on to the next epoch's order
    assert first.epoch == 1
    assert not torch.equal(next(iter(first))[1], epoch0)


def test_set_epoch_selects_the_order():
    loader = TensorLoader(*_data(50), batch_size=50, seed=3)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        orders.append(next(iter(loader))[1])
    assert torch.equal(orders[0], orders[2]) and not torch.equal(orders[0], orders[1])


def test_unseeded_loader_follows_torch_manual_seed():
    torch.manual_seed(0)
    a = next(iter(TensorLoader(*_data(50), batch_size=50)))[1]
    torch.manual_seed(0)
    b = next(iter(TensorLoader(*_data(50), batch_size=50)))[1]
    assert torch.equal(a, b)


def test_state_dict_round_trip():
    loader = TensorLoader(*_data(20), batch_size=5, seed=1)
    list(loader)
    restored = TensorLoader(*_data(20), batch_size=5, seed=99)
    restored.load_state_dict(loader.state_dict())
    assert torch.equal(next(iter(restored))[1], next(iter(loader))[1])


def test_numpy_float64_becomes_float32():
    loader = TensorLoader(np.zeros((4, 2)), np.zeros(4, dtype=np.int64), batch_size=2)
    inputs, targets = next(iter(loader))
    assert inputs.dtype == torch.float32 and targets.dtype == torch.int64


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((torch.zeros(4, 2), torch.zeros(3)), {}, "4 inputs but 3 targets"),
        ((torch.zeros(4, 2), torch.zeros(4)), {"batch_size": 0}, "batch_size=0"),
        ((torch.zeros(4, 2), torch.zeros(4)), {"batch_size": 8, "drop_last": True}, "would yield no batches"),
        ((torch.tensor(1.0), torch.tensor(1.0)), {}, "0-dim"),
    ],
)
def test_bad_arguments_are_refused(args, kwargs, match):
    with pytest.raises(DataError, match=match):
        TensorLoader(*args, **kwargs)


def test_transform_gets_a_generator_seeded_by_seed_epoch_and_batch():
    seen = []

    def record(inputs, generator):
        seen.append(torch.rand(1, generator=generator).item())
        return inputs + 100

    loader = TensorLoader(*_data(6), batch_size=3, seed=1, transform=record)
    batches = [inputs for inputs, _ in loader]
    assert all((b >= 100).all() for b in batches)
    first_epoch = list(seen)
    seen.clear()
    loader.set_epoch(0)
    list(loader)
    assert seen == first_epoch  # reproducible from (seed, epoch)
    seen.clear()
    list(loader)
    assert seen != first_epoch
    seen.clear()
    loader.set_epoch(0)
    loader.start_at(1)  # a resumed pass draws what the uninterrupted one drew for the same batches
    list(loader)
    assert seen == first_epoch[1:]


def test_pin_memory_without_cuda_changes_nothing():
    pinned = TensorLoader(*_data(10), batch_size=4, seed=0, pin_memory=True)
    plain = TensorLoader(*_data(10), batch_size=4, seed=0)
    assert pinned.pin_memory is torch.cuda.is_available()
    for (x1, y1), (x2, y2) in zip(pinned, plain):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_batches_copy_asynchronously():
    loader = TensorLoader(*_data(10), batch_size=4, seed=0, pin_memory=True, transform=lambda x, g: x * 2)
    for inputs, targets in loader:
        assert inputs.is_pinned() and targets.is_pinned()
        assert torch.equal(inputs.to("cuda", non_blocking=True).cpu(), inputs)
    ordered = TensorLoader(*_data(10), batch_size=4, shuffle=False, pin_memory=True)
    assert all(x.is_pinned() for x, _ in ordered)


def test_start_at_skips_to_a_batch_of_the_same_order_for_the_next_pass_only():
    loader = TensorLoader(*_data(20), batch_size=6, seed=4)
    whole = [targets.tolist() for _, targets in loader]
    loader.set_epoch(0)
    loader.start_at(2)
    assert [targets.tolist() for _, targets in loader] == whole[2:]
    loader.set_epoch(0)
    assert [targets.tolist() for _, targets in loader] == whole


def test_tensor_loader_shards_take_rank_strided_parts_of_each_global_batch():
    inputs, targets = torch.arange(20.0).unsqueeze(1), torch.arange(20)
    whole = TensorLoader(inputs, targets, batch_size=8, seed=4)
    shards = [TensorLoader(inputs, targets, batch_size=4, seed=4).shard(rank, 2) for rank in range(2)]
    assert [len(shard) for shard in shards] == [3, 3]
    for epoch in range(2):
        for loader in (whole, *shards):
            loader.set_epoch(epoch)
        for global_batch, *parts in zip(whole, *shards):
            assert [len(y) for _, y in parts] in ([4, 4], [2, 2])
            assert sorted(torch.cat([y for _, y in parts]).tolist()) == sorted(global_batch[1].tolist())
            assert global_batch[1][0::2].tolist() == parts[0][1].tolist()


def test_training_shards_are_even_and_validation_shards_exact():
    inputs, targets = torch.arange(7.0).unsqueeze(1), torch.arange(7)
    train = [TensorLoader(inputs, targets, batch_size=2, shuffle=False).shard(rank, 3) for rank in range(3)]
    assert [[y.tolist() for _, y in shard] for shard in train] == [[[0, 3], [6]], [[1, 4], [0]], [[2, 5], [1]]]
    val = [TensorLoader(inputs, targets, batch_size=2, shuffle=False).shard(rank, 3, even=False) for rank in range(3)]
    assert [[y.tolist() for _, y in shard] for shard in val] == [[[0, 3], [6]], [[1, 4]], [[2, 5]]]
    dropped = [TensorLoader(inputs, targets, batch_size=2, shuffle=False, drop_last=True).shard(rank, 3) for rank in range(3)]
    assert [[y.tolist() for _, y in shard] for shard in dropped] == [[[0, 3]], [[1, 4]], [[2, 5]]]
