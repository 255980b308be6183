import pytest
import torch
from torch import nn

from trainwell import ConfigError
from trainwell.models import RNN


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("batch", "steps", "features"), [(1, 1, 1), (4, 20, 1), (3, 7, 5)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_shape_over_batch_and_sequence_sizes(cell, batch, steps, features, bidirectional):
    model = RNN(features, 8, 3, cell=cell, num_layers=2, bidirectional=bidirectional).eval()
    assert model(torch.randn(batch, steps, features)).shape == (batch, 3)


def test_a_univariate_series_may_omit_the_feature_dimension():
    model = RNN(1, 8, 1).eval()
    series = torch.randn(4, 10)
    assert torch.equal(model(series), model(series.unsqueeze(-1)))


def test_token_ids_go_through_an_embedding():
    model = RNN(input_size=6, hidden_size=8, output_size=2, vocab_size=20).eval()
    assert model.embedding.num_embeddings == 20 and model.embedding.padding_idx == 0
    assert model(torch.randint(1, 20, (5, 9))).shape == (5, 2)
    with pytest.raises(ValueError, match="expected integer token ids"):
        model(torch.randn(5, 9))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_positions_do_not_change_the_output(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = RNN(3, 8, 2, cell=cell, bidirectional=bidirectional, pooling=pooling).eval()
    inputs, lengths = torch.randn(4, 6, 3), torch.tensor([6, 3, 1, 4])
    changed = inputs.clone()
    for row, length in enumerate(lengths):
        changed[row, length:] = 100 * torch.randn(6 - length, 3)
    with torch.no_grad():
        expected = torch.stack([model(inputs[row : row + 1, :length]).squeeze(0) for row, length in enumerate(lengths)])
        assert torch.allclose(model(inputs, lengths), expected, atol=1e-5)
        assert torch.allclose(model(changed, lengths), expected, atol=1e-5)


def test_padding_tokens_are_ignored_without_lengths():
    torch.manual_seed(0)
    model = RNN(4, 8, 3, vocab_size=10, bidirectional=True, pooling="mean").eval()
    with torch.no_grad():
        padded = model(torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0]]))
        assert torch.allclose(padded[0], model(torch.tensor([[5, 6, 7]]))[0], atol=1e-6)
        assert torch.allclose(padded[1], model(torch.tensor([[8]]))[0], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_parameter_gets_a_gradient(cell, checks):
    torch.manual_seed(0)
    model = RNN(3, 8, 2, cell=cell, num_layers=2, bidirectional=True, vocab_size=None)
    checks.every_parameter_gets_a_gradient(model, torch.randn(5, 7, 3), torch.randint(0, 2, (5,)))
    tokens = RNN(4, 8, 2, cell=cell, vocab_size=12)
    # The padding row of the embedding is fixed at zero by design; every other parameter learns.
    tokens.embedding.padding_idx = None
    checks.every_parameter_gets_a_gradient(tokens, torch.randint(1, 12, (5, 7)), torch.randint(0, 2, (5,)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_short_training_run_lowers_the_loss_on_a_forecast(cell, checks):
    torch.manual_seed(0)
    time = torch.arange(40.0).unsqueeze(0) + 10 * torch.rand(64, 1)
    series = torch.sin(0.3 * time)
    inputs, targets = series[:, :-1].unsqueeze(-1), series[:, -1:]
    before, after = checks.short_training_losses(
        RNN(1, 16, 1, cell=cell), inputs, targets, steps=60, lr=1e-2, loss_fn=nn.functional.mse_loss
    )
    assert after < 0.2 * before


def test_state_dict_round_trip(checks):
    torch.manual_seed(0)
    arguments = {
        "input_size": 4,
        "hidden_size": 8,
        "output_size": 3,
        "vocab_size": 10,
        "num_layers": 2,
        "bidirectional": True,
    }
    checks.state_dict_round_trip(RNN(**arguments), RNN(**arguments), torch.randint(1, 10, (3, 6)))


def test_init_statistics_match_the_documented_choices():
    torch.manual_seed(0)
    lstm = RNN(16, 32, 3, cell="lstm", num_layers=2, vocab_size=50)
    recurrent = lstm.recurrent
    for layer in range(2):
        weight_hh = getattr(recurrent, f"weight_hh_l{layer}").detach()
        for block in weight_hh.chunk(4):
            assert torch.allclose(block @ block.T, torch.eye(32), atol=1e-5)  # orthogonal per gate
        bias_ih = getattr(recurrent, f"bias_ih_l{layer}")
        assert torch.all(bias_ih[32:64] == 1) and bias_ih[:32].abs().sum() == 0 and bias_ih[64:].abs().sum() == 0
        assert getattr(recurrent, f"bias_hh_l{layer}").abs().sum() == 0
    assert lstm.embedding.weight[0].abs().sum() == 0
    assert lstm.embedding.weight[1:].std().item() == pytest.approx(16**-0.5, rel=0.1)
    gru = RNN(16, 32, 3, cell="gru").recurrent
    for block in gru.weight_hh_l0.detach().chunk(3):
        assert torch.allclose(block @ block.T, torch.eye(32), atol=1e-5)
    assert gru.bias_ih_l0.abs().sum() == 0  # no forget gate: all biases zero


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "transformer"}, "cell='transformer' is not a valid choice"),
        ({"pooling": "first"}, "pooling='first'"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"hidden_size": 0}, "hidden_size=0"),
        ({"vocab_size": 10, "padding_idx": 10}, "padding_idx=10"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    arguments = {"input_size": 2, "hidden_size": 4, "output_size": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        RNN(**arguments)


def test_wrong_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(N, T, 3\)"):
        RNN(3, 4, 1)(torch.randn(2, 5, 4))
