import torch
from torch import nn

from trainwell.models import CNN, RNN, Transformer, summary


def test_rows_name_each_layer_with_its_output_shape_and_parameters():
    text = summary(CNN(1, 10, channels=(8, 16), convs_per_block=1, pooled_size=1, hidden=0), torch.randn(5, 1, 8, 8))
    lines = text.splitlines()
    assert lines[0] == "CNN: input (5, 1, 8, 8) -> output (5, 10)"
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert rows["features.0.0"][1:] == ["Conv2d", "(5,", "8,", "8,", "8)", "72"]
    assert rows["features.1.3"][1] == "MaxPool2d"
    assert "(5, 16, 2, 2)" in next(line for line in lines if line.startswith("features.1.3"))
    assert next(line for line in lines if line.startswith("head")).split()[-1] == "170"
    total = sum(p.numel() for p in CNN(1, 10, channels=(8, 16), convs_per_block=1, pooled_size=1, hidden=0).parameters())
    assert lines[-1] == f"Parameters: {total:,} (trainable {total:,})"


def test_frozen_parameters_are_counted_apart():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].requires_grad_(False)
    assert summary(model, torch.randn(2, 4)).splitlines()[-1] == "Parameters: 58 (trainable 18)"


def test_recurrent_and_attention_models_and_tuple_inputs():
    rnn_text = summary(RNN(3, 8, 2), (torch.randn(4, 6, 3), torch.tensor([6, 2, 3, 1])))
    assert "recurrent  LSTM" in rnn_text and "packed" in rnn_text
    transformer_text = summary(
        Transformer(2, vocab_size=9, d_model=16, num_heads=2, num_layers=1), torch.randint(0, 9, (2, 5))
    )
    # Hooks see the layers even though torch's fused inference path would skip them under no_grad.
    assert "(2, 6, 64)" in next(
        line for line in transformer_text.splitlines() if line.startswith("encoder.layers.0.linear1")
    )
    # The summary token belongs to the model itself; its row makes the counts add up.
    assert transformer_text.splitlines()[2].split() == ["(own)", "Transformer", "(2,", "2)", "16"]
    counts = [int(line.split()[-1].replace(",", "")) for line in transformer_text.splitlines()[2:-1]]
    assert f"Parameters: {sum(counts):,} " in transformer_text


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = CNN(1, 3, channels=(4,)).train()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    summary(model, torch.randn(8, 1, 6, 6) * 5)
    assert model.training
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())  # BatchNorm stats untouched
    assert all(not hook for module in model.modules() for hook in (module._forward_hooks,))
