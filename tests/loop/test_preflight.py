import pytest
import torch
from torch import nn

from trainwell import DataError, ModelError
from trainwell.loop.preflight import check_inputs, check_loader, loader_length, summarize


def test_check_inputs_names_what_is_wrong():
    with pytest.raises(ModelError, match=r"model=<class .*Linear'> is a type: expected a torch.nn.Module"):
        check_inputs(nn.Linear, [(torch.zeros(1), torch.zeros(1))], None)
    with pytest.raises(DataError, match="val_loader is empty"):
        check_inputs(nn.Linear(1, 1), [(torch.zeros(1), torch.zeros(1))], [])


@pytest.mark.parametrize(
    ("loader", "message"),
    [(None, "data=None"), (torch.zeros(3), "data is a tensor"), (iter([1]), "one-shot iterator"), ([], "data is empty"), (5, "data is a int")],
)
def test_check_loader(loader, message):
    with pytest.raises(DataError, match=message):
        check_loader(loader, "data")


def test_loader_length_of_streams_is_none():
    class Stream:
        def __iter__(self):
            yield from ()

    assert loader_length([1, 2]) == 2 and loader_length(Stream()) is None


def test_summarize_falls_back_to_one_sample_when_the_batch_does_not_fit():
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def forward(self, inputs):
            if len(inputs) > 1:
                raise torch.OutOfMemoryError("simulated")
            return self.layer(inputs)

    table = summarize(Small(), torch.zeros(8, 2), torch.device("cpu"))
    assert table.startswith("Small: input (1, 2) -> output (1, 1)")


def test_the_first_batch_checks_leave_a_loaders_own_generator_alone(blobs):
    """fit over DataLoader(generator=...) trains on the order a plain loop over the same loader sees."""
    from torch.utils.data import DataLoader, TensorDataset

    import trainwell

    inputs, targets = blobs

    def model_and_loader():
        torch.manual_seed(1)
        order = torch.Generator().manual_seed(7)
        loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True, generator=order)
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3)), loader

    plain, loader = model_and_loader()
    optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-3, fused=True)
    for batch_x, batch_y in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(plain(batch_x), batch_y).backward()
        optimizer.step()
    model, loader = model_and_loader()
    options = {"schedule": "constant", "max_grad_norm": None, "early_stopping_patience": None}
    trainwell.fit(model, loader, loader, epochs=1, restore_best_weights=False, decay_bias_and_norm=True,
                  progress=False, **options)  # fmt: skip
    for mine, theirs in zip(model.parameters(), plain.parameters()):
        assert torch.equal(mine, theirs)


def test_a_model_on_the_meta_device_is_refused_saying_how_to_give_it_values():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    loader = [(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ModelError, match=r"model=Sequential has tensors on the meta device \(0\.weight, 0\.bias, 1\.weight and 4 more\)"):
        check_inputs(model, loader, None)
