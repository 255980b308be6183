import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainwell.data import TensorLoader
from trainwell.reliability.loader_position import LoaderPosition, _generator_states, epoch_batches


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
