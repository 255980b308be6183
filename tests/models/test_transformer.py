import math

import pytest
import torch

from trainwell import ConfigError
from trainwell.models import Transformer


def small(**kwargs):
    return Transformer(**{"d_model": 16, "num_heads": 2, "num_layers": 2, **kwargs})


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (2, 5), (7, 33)])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_output_shape_for_tokens_and_features(batch, steps, pooling, positions):
    tokens = small(output_size=3, vocab_size=11, pooling=pooling, positions=positions).eval()
    assert tokens(torch.randint(0, 11, (batch, steps))).shape == (batch, 3)
    features = small(output_size=1, input_size=4, pooling=pooling, positions=positions).eval()
    assert features(torch.randn(batch, steps, 4)).shape == (batch, 1)


@pytest.mark.parametrize(("channels", "size", "patch", "batch"), [(1, 8, 2, 3), (1, 28, 7, 2), (3, 32, 4, 1)])
def test_image_patches(channels, size, patch, batch):
    model = small(output_size=10, input_size=channels, patch_size=patch, max_len=(size // patch) ** 2).eval()
    assert model(torch.randn(batch, channels, size, size)).shape == (batch, 10)


def test_a_sequence_longer_than_max_len_is_a_clear_error():
    with pytest.raises(ValueError, match="more than max_len=4"):
        small(output_size=2, vocab_size=5, max_len=4)(torch.randint(0, 5, (1, 6)))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_padded_positions_do_not_change_the_output(pooling, positions):
    torch.manual_seed(0)
    model = small(output_size=2, input_size=3, pooling=pooling, positions=positions).eval()
    inputs, lengths = torch.randn(4, 6, 3), torch.tensor([6, 3, 1, 4])
    changed = inputs.clone()
    for row, length in enumerate(lengths):
        changed[row, length:] = 100 * torch.randn(6 - length, 3)
    with torch.no_grad():
        expected = torch.stack([model(inputs[row : row + 1, :length]).squeeze(0) for row, length in enumerate(lengths)])
        assert torch.allclose(model(inputs, lengths), expected, atol=1e-5)
        assert torch.allclose(model(changed, lengths), expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_tokens_are_masked_without_lengths(pooling):
    torch.manual_seed(0)
    model = small(output_size=3, vocab_size=10, pooling=pooling).eval()
    with torch.no_grad():
        padded = model(torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0]]))
        assert torch.allclose(padded[0], model(torch.tensor([[5, 6, 7]]))[0], atol=1e-5)
        assert torch.allclose(padded[1], model(torch.tensor([[8]]))[0], atol=1e-5)
        # A row of padding only still gives finite outputs.
        assert torch.isfinite(model(torch.zeros(2, 4, dtype=torch.int64))).all()


def test_masking_holds_in_training_mode_too():
    torch.manual_seed(0)
    model = small(output_size=2, vocab_size=10, dropout=0.0).train()
    assert torch.allclose(model(torch.tensor([[4, 5, 0, 0]])), model(torch.tensor([[4, 5]])), atol=1e-5)


def test_every_parameter_gets_a_gradient(checks):
    torch.manual_seed(0)
    for model, inputs in (
        (small(output_size=3, input_size=4), torch.randn(5, 6, 4)),
        (
            small(output_size=3, input_size=1, patch_size=2, pooling="mean", positions="sinusoidal"),
            torch.randn(5, 1, 8, 8),
        ),
    ):
        checks.every_parameter_gets_a_gradient(model, inputs, torch.randint(0, 3, (5,)))
    tokens = small(output_size=3, vocab_size=12)
    tokens.embed.padding_idx = None  # the padding row stays zero by design
    checks.every_parameter_gets_a_gradient(tokens, torch.randint(1, 12, (5, 6)), torch.randint(0, 3, (5,)))


def test_a_short_training_run_lowers_the_loss_on_a_task_that_needs_attention(checks):
    # The label is the token at the position named by the first token: no bag of tokens solves it.
    torch.manual_seed(0)
    tokens = torch.randint(2, 10, (128, 6))
    tokens[:, 0] = torch.randint(1, 6, (128,))
    labels = tokens[torch.arange(128), tokens[:, 0]] - 2
    before, after = checks.short_training_losses(
        small(output_size=8, vocab_size=10, dropout=0.0), tokens, labels, steps=80, lr=3e-3
    )
    assert after < 0.5 * before


def test_state_dict_round_trip(checks):
    torch.manual_seed(0)
    arguments = {"output_size": 3, "vocab_size": 10}
    checks.state_dict_round_trip(small(**arguments), small(**arguments), torch.randint(0, 10, (3, 6)))


def test_init_statistics_match_the_documented_choices():
    torch.manual_seed(0)
    d_model = 256
    model = Transformer(output_size=10, vocab_size=1000, d_model=d_model, num_heads=4, num_layers=1)
    layer = model.encoder.layers[0]
    in_bound, out_bound = math.sqrt(6 / (d_model + 3 * d_model)), math.sqrt(6 / (2 * d_model))
    assert 0.95 * in_bound < layer.self_attn.in_proj_weight.abs().max().item() <= in_bound  # Xavier
    assert 0.95 * out_bound < layer.self_attn.out_proj.weight.abs().max().item() <= out_bound
    assert layer.self_attn.in_proj_bias.abs().sum() == 0 and layer.self_attn.out_proj.bias.abs().sum() == 0
    assert layer.linear1.weight.std().item() == pytest.approx(math.sqrt(2 / d_model), rel=0.02)  # Kaiming
    for embedding in (model.embed.weight[1:], model.position.weight, model.cls_token):
        assert embedding.std().item() == pytest.approx(d_model**-0.5, rel=0.1)
    assert model.embed.weight[0].abs().sum() == 0
    for norm in (layer.norm1, layer.norm2, model.encoder.norm):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    head_bound = math.sqrt(6 / (d_model + 10))
    assert 0.9 * head_bound < model.head.weight.abs().max().item() <= head_bound


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "set exactly one of them"),
        ({"vocab_size": 5, "input_size": 3}, "set exactly one of them"),
        ({"vocab_size": 5, "d_model": 30, "num_heads": 4}, "num_heads=4 does not divide d_model=30"),
        ({"vocab_size": 5, "positions": "rotary"}, "positions='rotary'"),
        ({"vocab_size": 5, "pooling": "max"}, "pooling='max'"),
        ({"vocab_size": 5, "patch_size": 4}, "patch_size=4 needs input_size"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Transformer(output_size=2, **kwargs)
