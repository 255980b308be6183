import inspect
import subprocess
import sys

import pytest

from trainwell import ConfigError, models
from trainwell.models import CNN, MLP, RNN, Transformer
from trainwell.models.registry import MODELS, check_arguments, describe


def test_names():
    assert models.names() == ["mlp", "cnn", "lstm", "gru", "rnn", "transformer"]


@pytest.mark.parametrize(
    ("name", "cls"), [("cnn", CNN), ("lstm", RNN), ("gru", RNN), ("rnn", RNN), ("transformer", Transformer)]
)
def test_arguments_match_the_class_signature(name, cls):
    signature = inspect.signature(cls).parameters
    spec = MODELS[name]
    assert [a.name for a in spec.arguments] == [p for p in signature if p not in spec.fixed]
    for argument in spec.arguments:
        default = signature[argument.name].default
        if default is not inspect.Parameter.empty:
            assert argument.default == default or tuple(argument.default) == tuple(default), argument.name


def test_mlp_arguments_match_the_mlp_options():
    options = inspect.signature(MLP).parameters
    for argument in MODELS["mlp"].arguments:
        if argument.name in options:
            assert argument.default == options[argument.name].default, argument.name


def test_build_makes_each_model_with_the_fixed_arguments():
    assert models.build("mlp", input_size=4, output_size=3, hidden=8).dims == [4, 8, 3]
    assert models.build("gru", input_size=1, output_size=1).cell == "gru"
    assert models.build("rnn", input_size=1, output_size=1).recurrent.mode == "RNN_TANH"
    assert models.build("transformer", output_size=2, vocab_size=9).head.out_features == 2
    cnn = models.build("cnn", in_channels=3, num_classes=4, channels=[8, 16], dropout=0)
    assert len(cnn.features) == 2 and cnn.dropout.p == 0.0


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("cnnn", {}, "model='cnnn' is not a known model: expected one of 'mlp', 'cnn'"),
        ("cnn", {"chanels": [8]}, "'chanels' is not an argument of model 'cnn'. Did you mean 'channels'?"),
        (
            "cnn",
            {"channels": "wide"},
            "model argument channels='wide' is invalid for model 'cnn': expected a list of integers ≥ 1",
        ),
        ("cnn", {"dropout": 1.5}, "dropout=1.5 is invalid for model 'cnn': expected a number from 0 to below 1"),
        ("lstm", {"bidirectional": "yes"}, "bidirectional='yes' is invalid for model 'lstm': expected true or false"),
        ("lstm", {"cell": "gru"}, "The name 'lstm' fixes cell='lstm'"),
        ("transformer", {"positions": "rotary"}, "expected 'learned' or 'sinusoidal'"),
    ],
)
def test_bad_names_and_arguments_are_refused_before_any_model_is_built(name, arguments, message):
    with pytest.raises(ConfigError) as error:
        check_arguments(name, arguments)
    assert message in str(error.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as error:
        check_arguments("cnn", {"kernel_size": 2.5, "dropout": -1})
    assert len(str(error.value).splitlines()) == 2


def test_values_are_converted_where_that_is_safe():
    assert check_arguments("cnn", {"channels": 32, "dropout": 0}) == {"channels": [32], "dropout": 0.0}
    with pytest.raises(ConfigError, match="kernel_size=3.0"):
        check_arguments("cnn", {"kernel_size": 3.0})


def test_sizes_must_be_given_when_there_is_no_data():
    with pytest.raises(ConfigError, match="model 'lstm' needs input_size, output_size"):
        models.build("lstm", hidden_size=4)


def test_describe_lists_every_model_and_argument():
    text = describe()
    for name, spec in MODELS.items():
        assert f"\n{name}: " in f"\n{text}"
        for argument in spec.arguments:
            assert f"  {argument.name} " in text
    assert "channels         output channels of each block; default 32,64" in describe("cnn")


def test_the_registry_loads_without_torch():
    code = "import sys; from trainwell import models; models.describe(); models.registry.check_arguments('cnn', {}); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_sizes_no_machine_can_allocate_fail_with_the_arguments_that_asked_for_them(monkeypatch):
    import torch

    def refusing_allocator(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 102400000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(torch.nn.Linear, "__init__", refusing_allocator)
    with pytest.raises(ConfigError, match=r"model 'mlp' \(.*input_size=100000000, output_size=10\) asked for 102\.4 GB at once"):
        models.build("mlp", input_size=100_000_000, output_size=10)
