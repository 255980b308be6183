import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainwell.data import TensorLoader
from trainwell.reliability.loader_position import LoaderPosition, _generator_states, epoch_batches, peek_first_batch


def _epoch_start(loader):
    return {"torch": torch.get_rng_state(), "generators": _generator_states(loader)}


@pytest.mark.parametrize("kind", ["dataloader", "dataloader_generator", "batch_size_none", "list"])
def test_a_loader_is_positioned_mid_epoch_exactly_without_disturbing_the_random_state(kind):
    inputs, targets = torch.arange(40.0).unsqueeze(1), torch.arange(40)
    dataset = TensorDataset(inputs, targets)
    if kind == "dataloader":
        loader = DataLoader(dataset, batch_size=6, shuffle=True)
    elif kind == "dataloader_generator":
        loader = DataLoader(dataset, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(3))
    elif kind == "batch_size_none":
        loader = DataLoader(dataset, batch_size=None, shuffle=True)
    else:
        loader = [(inputs[i : i + 6], targets[i : i + 6]) for i in range(0, 40, 6)]
    own = getattr(loader, "generator", None)

    torch.manual_seed(0)
    start = _epoch_start(loader)
    iterator = iter(loader)
    done = [next(iterator) for _ in range(3)]
    at_checkpoint = (torch.get_rng_state(), own.get_state() if own is not None else None)
    next_draws = torch.rand(3)  # what training draws after batch 3 (dropout masks ...)
    rest = list(iterator)
    own_after_epoch = own.get_state() if own is not None else None  # a sampler may draw when it runs out

    torch.manual_seed(123)  # a new process is elsewhere until it restores the checkpoint's state
    torch.set_rng_state(at_checkpoint[0])
    if own is not None:
        own.set_state(at_checkpoint[1])
    resumed = list(epoch_batches(loader, 3, start))
    assert torch.equal(torch.rand(3), next_draws)
    if own is not None:
        assert torch.equal(own.get_state(), own_after_epoch)
    assert len(resumed) == len(rest) > 0
    for (x, y), (rx, ry) in zip(rest, resumed):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    seen = torch.cat([torch.as_tensor(y).flatten() for _, y in done + resumed])
    assert sorted(seen.tolist()) == list(range(40))  # every sample once in the epoch


def test_positioning_a_dataloader_does_not_load_the_skipped_samples():
    loaded = []

    class Recording(torch.utils.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, index):
            loaded.append(index)
            return torch.tensor([float(index)]), index % 2

    loader = DataLoader(Recording(), batch_size=5, shuffle=True)
    torch.manual_seed(0)
    start = _epoch_start(loader)
    resumed = list(epoch_batches(loader, 4, start))
    assert len(resumed) == 2 and len(loaded) == 10


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_the_position_part_resumes_an_epoch_at_its_saved_batch_in_a_fresh_part(kind):
    """What a checkpoint inside an epoch holds brings a new loader (another process) to the same next batches."""
    inputs, targets = torch.arange(40.0).unsqueeze(1), torch.arange(40)

    def loader():
        if kind == "tensor":
            return TensorLoader(inputs, targets, batch_size=6, shuffle=True, seed=None)
        return DataLoader(TensorDataset(inputs, targets), batch_size=6, shuffle=True)

    torch.manual_seed(0)
    position = LoaderPosition(loader())
    iterator = iter(position.begin_epoch(batch_in_epoch=0))
    [next(iterator) for _ in range(2)]
    saved = position.state_dict()
    rng = torch.get_rng_state()
    rest = list(iterator)

    torch.manual_seed(99)  # another process: another unseeded loader, another global state
    fresh = LoaderPosition(loader())
    fresh.load_state_dict(saved)
    torch.set_rng_state(rng)
    resumed = list(fresh.begin_epoch(batch_in_epoch=2))
    assert len(resumed) == len(rest) == 5
    for (x, y), (rx, ry) in zip(rest, resumed):
        assert torch.equal(x, rx) and torch.equal(y, ry)


class _Recorded(TensorDataset):
    """Records the process that reads each item, and whether items were read in batches."""

    def __init__(self, *tensors, batched=False):
        super().__init__(*tensors)
        self.readers = []
        if batched:
            self.__getitems__ = self._read_many

    def __getitem__(self, index):
        import os

        self.readers.append(os.getpid())
        return super().__getitem__(index)

    def _read_many(self, indices):
        self.readers.append("batched")
        return [super(_Recorded, self).__getitem__(index) for index in indices]


@pytest.mark.parametrize("workers", [0, 2])
def test_peeking_the_first_batch_leaves_the_order_to_come_as_it_was(workers):
    """A DataLoader's own generator is not advanced (fit then sees the order a plain loop over it sees),
    and one with workers is read in this process: no worker is started for a batch."""
    import os

    inputs, targets = torch.arange(40.0).unsqueeze(1), torch.arange(40)

    def loader(dataset):
        generator = torch.Generator().manual_seed(3)
        return DataLoader(dataset, batch_size=6, shuffle=True, generator=generator, num_workers=workers)

    untouched = [batch[1].tolist() for batch in loader(TensorDataset(inputs, targets))]
    dataset = _Recorded(inputs, targets)
    peeked_loader = loader(dataset)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = peek_first_batch(peeked_loader)
    assert torch.equal(torch.get_rng_state(), before)
    assert dataset.readers == [os.getpid()] * 6  # six items, read here
    assert first[1].tolist() == untouched[0]
    assert [batch[1].tolist() for batch in peeked_loader] == untouched


def test_peeking_uses_the_datasets_batched_read_and_refuses_nothing_silently():
    inputs, targets = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    dataset = _Recorded(inputs, targets, batched=True)
    first = peek_first_batch(DataLoader(dataset, batch_size=4, num_workers=2))
    assert dataset.readers == ["batched"] and first[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        peek_first_batch(DataLoader(TensorDataset(inputs[:0], targets[:0]), batch_size=4, num_workers=2))
    with pytest.raises(StopIteration):
        peek_first_batch([])
