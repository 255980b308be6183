import io
import math

import pytest
import torch
from PIL import Image
from torch import nn

import trainwell
from trainwell import ConfigError, DataError, ModelError
from trainwell.loop.lr_finder import find_lr


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))


def test_suggests_an_lr_below_the_loss_minimum(blob_loaders):
    result = trainwell.find_lr(_model(), blob_loaders[0], num_steps=60)
    assert 1e-6 <= result.suggested_lr <= 1 and result.suggested_lr == pytest.approx(result.min_loss_lr / 5)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 60
    assert all(later > earlier for earlier, later in zip(result.lrs, result.lrs[1:]))
    lowest = min(range(len(result.smoothed)), key=result.smoothed.__getitem__)
    assert result.lrs[lowest] == result.min_loss_lr and result.smoothed[lowest] < result.smoothed[0]


def test_the_model_optimizer_and_random_state_are_restored(blob_loaders):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    inputs, targets = next(iter(blob_loaders[0]))
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()  # momentum buffers now exist
    model.eval()
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer_state = {key: value.clone() for key, value in optimizer.state[model[0].weight].items()}
    rng = torch.get_rng_state()

    result = find_lr(model, blob_loaders[0], optimizer=optimizer, num_steps=30)

    assert len(result.lrs) > 10
    assert all(
        torch.equal(weights[name], tensor) for name, tensor in model.state_dict().items()
    )  # BatchNorm buffers too
    assert all(torch.equal(before, p.grad) for before, p in zip(grads, model.parameters()))
    assert not model.training
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert all(torch.equal(value, optimizer.state[model[0].weight][key]) for key, value in optimizer_state.items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_training_after_the_finder_is_the_same_as_without_it(blob_loaders):
    plain = trainwell.fit(_model(), *blob_loaders, epochs=2, seed=1, progress=False)
    probed_model = _model()
    find_lr(probed_model, blob_loaders[0], num_steps=20)
    probed = trainwell.fit(probed_model, *blob_loaders, epochs=2, seed=1, progress=False)
    assert [row["train_loss"] for row in probed.history] == [row["train_loss"] for row in plain.history]


def test_stops_when_the_loss_diverges(blob_loaders):
    result = find_lr(
        _model(), blob_loaders[0], start_lr=1e-3, end_lr=1e6, num_steps=200, max_grad_norm=None, optimizer="sgd"
    )
    assert result.stopped_early and len(result.lrs) < 200
    assert math.isnan(result.smoothed[-1]) or result.smoothed[-1] > min(v for v in result.smoothed if math.isfinite(v))


def test_no_suggestion_when_the_loss_never_falls():
    class ConstantLogits(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.ones(1))

        def forward(self, inputs):
            return torch.zeros(len(inputs), 3) + 0 * self.unused

    inputs, targets = torch.randn(64, 2), torch.randint(0, 3, (64,))
    result = find_lr(ConstantLogits(), [(inputs, targets)], num_steps=10)
    assert result.suggested_lr is None


def test_the_plot_is_a_png(blob_loaders, tmp_path):
    path = find_lr(_model(), blob_loaders[0], num_steps=20).plot(tmp_path / "lr.png")
    assert Image.open(io.BytesIO(path.read_bytes())).format == "PNG"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start_lr": 0}, r"start_lr=0 is out of range: expected a number > 0"),
        ({"start_lr": 1e-3, "end_lr": 1e-4}, r"end_lr=0.0001 is out of range: expected a finite number above start_lr"),
        ({"num_steps": 5}, r"num_steps=5 is out of range: expected an integer from 10 to 10000"),
        ({"smoothing": 1.0}, r"smoothing=1.0 is out of range"),
        ({"divisor": 0.5}, r"divisor=0.5 is out of range"),
    ],
)
def test_bad_arguments_are_named(blob_loaders, arguments, message):
    with pytest.raises(ConfigError, match=message):
        find_lr(_model(), blob_loaders[0], **arguments)


def test_bad_model_and_loader():
    with pytest.raises(ModelError, match="expected a torch.nn.Module"):
        find_lr("model", [])
    with pytest.raises(DataError, match="train_loader is empty"):
        find_lr(_model(), [])
