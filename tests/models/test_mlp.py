import pytest
import torch
from torch import nn

from trainwell import ConfigError
from trainwell.models import MLP


@pytest.mark.parametrize(("dims", "input_shape"), [([784, 256, 128, 10], (32, 784)), ([784, 64, 10], (8, 1, 28, 28)), ([4, 3], (5, 4))])
def test_forward_shape(dims, input_shape):
    assert MLP(dims)(torch.randn(*input_shape)).shape == (input_shape[0], dims[-1])


def test_every_parameter_gets_a_gradient():
    model = MLP([20, 32, 16, 3])
    loss = nn.functional.cross_entropy(model(torch.randn(8, 20)), torch.randint(0, 3, (8,)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_layout_is_linear_batchnorm_activation_dropout_then_plain_linear():
    model = MLP([10, 8, 4], dropout=0.3)
    kinds = [type(layer).__name__ for layer in model.network]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert model.network[0].bias is None  # BatchNorm's shift makes it redundant
    plain = MLP([10, 8, 4], dropout=0.0, batch_norm=False, activation="gelu")
    assert [type(layer).__name__ for layer in plain.network] == ["Linear", "GELU", "Linear"]


def test_state_dict_round_trip():
    model, other = MLP([6, 5, 2]), MLP([6, 5, 2])
    other.load_state_dict(model.state_dict())
    model.eval(), other.eval()
    x = torch.randn(3, 6)
    assert torch.equal(model(x), other(x))


@pytest.mark.parametrize(("kwargs", "match"), [({"dims": [10]}, "dims="), ({"dims": [4, 2], "dropout": 1.0}, "dropout=1.0"),
                                                ({"dims": [4, 2], "activation": "swish"}, "activation='swish'")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):  # a TrainwellError and a ValueError
        MLP(**kwargs)
