import math

import pytest
import torch
from torch import nn

from trainwell.models import init_weights


def test_relu_layers_get_kaiming_and_the_output_layer_xavier():
    torch.manual_seed(0)
    model = init_weights(nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 500)))
    hidden, output = model[0], model[2]
    assert hidden.weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    bound = math.sqrt(6 / (1000 + 500))
    assert output.weight.abs().max().item() <= bound and output.weight.abs().max().item() > 0.95 * bound
    assert hidden.bias.abs().sum() == 0 and output.bias.abs().sum() == 0


def test_kaiming_keeps_activation_scale_through_relu_layers():
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    model = init_weights(nn.Sequential(*layers, nn.Linear(512, 10)))
    x = torch.randn(256, 512)
    hidden = model[:-1](x)
    # Kaiming keeps the second moment: E[h^2] stays near E[x^2] = 1 after 10 ReLU layers.
    assert 0.5 < hidden.pow(2).mean().item() < 2.0


def test_recurrent_norm_and_embedding_layers():
    lstm = nn.LSTM(8, 16)
    model = init_weights(nn.ModuleDict({"lstm": lstm, "norm": nn.LayerNorm(16), "embed": nn.Embedding(100, 16, padding_idx=0)}))
    for block in lstm.weight_hh_l0.detach().chunk(4):
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
    assert torch.all(lstm.bias_ih_l0[16:32] == 1) and lstm.bias_ih_l0[:16].abs().sum() == 0
    assert lstm.bias_hh_l0.abs().sum() == 0
    assert torch.all(model["norm"].weight == 1) and torch.all(model["norm"].bias == 0)
    assert model["embed"].weight[0].abs().sum() == 0
    assert abs(model["embed"].weight[1:].std().item() - 0.25) < 0.03


def test_attention_projections_get_xavier():
    attention = nn.MultiheadAttention(32, 4)
    nn.init.zeros_(attention.in_proj_weight)
    init_weights(nn.ModuleList([attention, nn.Linear(32, 2)]))
    bound = math.sqrt(6 / (32 + 96))
    assert 0 < attention.in_proj_weight.abs().max().item() <= bound
    assert attention.in_proj_bias.abs().sum() == 0


def test_attention_output_projection_is_not_treated_as_a_relu_layer():
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(256, 4)
    head = nn.Linear(256, 2)
    init_weights(nn.ModuleList([attention, head]))
    bound = math.sqrt(6 / (256 + 256))
    assert attention.out_proj.weight.abs().max().item() <= bound  # Xavier, not Kaiming (std 0.088)
    assert attention.out_proj.bias.abs().sum() == 0


def test_gru_and_elman_recurrent_weights_are_orthogonal_with_zero_biases():
    for rnn, gates in ((nn.GRU(8, 16), 3), (nn.RNN(8, 16), 1)):
        init_weights(nn.ModuleList([rnn]))
        for block in rnn.weight_hh_l0.detach().chunk(gates):
            assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
        assert rnn.bias_ih_l0.abs().sum() == 0 and rnn.bias_hh_l0.abs().sum() == 0
        bound = math.sqrt(6 / (8 + 16 * gates))
        assert 0 < rnn.weight_ih_l0.abs().max().item() <= bound  # Xavier input weights


def test_conv_layers_get_kaiming_fan_in():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3)
    init_weights(nn.ModuleList([conv, nn.Linear(4, 2)]))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    assert conv.bias.abs().sum() == 0


def test_an_explicit_output_layer_gets_xavier_even_if_not_last():
    torch.manual_seed(0)
    head, later = nn.Linear(400, 300), nn.Linear(300, 300)
    init_weights(nn.ModuleList([head, later]), output_layer=head)
    bound = math.sqrt(6 / 700)
    assert 0.95 * bound < head.weight.abs().max().item() <= bound
    assert later.weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.05)
