import math

import pytest
import torch

from trainwell import ConfigError
from trainwell.models import CNN


@pytest.mark.parametrize(
    ("channels", "size", "batch"), [(1, 8, 1), (1, 8, 32), (1, 28, 4), (3, 32, 2), (3, 7, 3), (1, 1, 2), (3, 64, 2)]
)
def test_output_shape_for_any_image_size_and_batch(channels, size, batch):
    model = CNN(in_channels=channels, num_classes=10, channels=(8, 16, 16)).eval()
    assert model(torch.randn(batch, channels, size, size)).shape == (batch, 10)


def test_greyscale_images_without_a_channel_dimension_are_read_as_one_channel():
    model = CNN(1, 4, channels=(8,)).eval()
    images = torch.randn(3, 8, 8)
    assert torch.equal(model(images), model(images.unsqueeze(1)))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) images"):
        CNN(3, 10)(torch.randn(2, 1, 8, 8))


def test_layout_blocks_then_the_pooled_grid_a_dense_layer_dropout_and_head():
    model = CNN(1, 10, channels=(32, 64), convs_per_block=2, pooled_size=4, hidden=128)
    kinds = [type(layer).__name__ for layer in model.features[0]]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert model.features[0][0].bias is None  # BatchNorm's shift makes it redundant
    assert len(model.features) == 2 and model.dense[0].in_features == 64 * 4 * 4 and model.dense[0].out_features == 128
    assert model.head.in_features == 128 and model.head.out_features == 10
    # A map smaller than the grid (8x8 digits pool to 2x2) is repeated to fill it: any size works.
    assert model.eval()(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    plain = CNN(1, 10, channels=(32, 64), pooled_size=1, hidden=0)  # global average pooling straight into the head
    assert isinstance(plain.dense, torch.nn.Identity) and plain.head.in_features == 64


def test_the_default_cnn_stays_small_and_takes_every_image_size():
    model = CNN(3, 100).eval()
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    for size in (8, 28, 32, 96):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 100)


def test_every_parameter_gets_a_gradient(checks):
    torch.manual_seed(0)
    checks.every_parameter_gets_a_gradient(
        CNN(1, 5, channels=(8, 16), batch_norm=True), torch.randn(6, 1, 12, 12), torch.randint(0, 5, (6,))
    )


def test_a_short_training_run_lowers_the_loss(checks):
    torch.manual_seed(0)
    images, labels = torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,))
    before, after = checks.short_training_losses(CNN(3, 4, channels=(16, 32), dropout=0.0), images, labels)
    assert after < 0.5 * before


def test_state_dict_round_trip(checks):
    torch.manual_seed(0)
    model = CNN(1, 3, channels=(8,))
    # A trained-looking BatchNorm: running statistics are part of the state too.
    model.train()
    model(torch.randn(16, 1, 8, 8) * 3 + 1)
    checks.state_dict_round_trip(model, CNN(1, 3, channels=(8,)), torch.randn(4, 1, 8, 8))


def test_init_statistics_match_the_documented_choices():
    torch.manual_seed(0)
    model = CNN(in_channels=64, num_classes=100, channels=(256,), pooled_size=1, hidden=0)
    conv, norm = model.features[0][0], model.features[0][1]
    fan_in = 64 * 3 * 3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)  # Kaiming, fan-in
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    bound = math.sqrt(6 / (256 + 100))  # Xavier uniform on the head
    assert 0.95 * bound < model.head.weight.abs().max().item() <= bound
    assert model.head.bias.abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": []}, "channels="),
        ({"kernel_size": 2}, "kernel_size=2"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"in_channels": 0}, "in_channels=0"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    arguments = {"in_channels": 1, "num_classes": 10, **kwargs}
    with pytest.raises(ConfigError, match=match):
        CNN(**arguments)
