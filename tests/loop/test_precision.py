import pytest
import torch

from trainwell import ConfigError
from trainwell.loop.precision import Precision, resolve_precision

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpu():
    assert resolve_precision("auto", CPU) == "fp32"


def test_auto_on_cuda_prefers_bf16_where_supported(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", cuda) == "fp16"


def test_bf16_refused_on_cuda_without_native_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ConfigError, match="precision='bf16'.*V100.*fp16"):
        resolve_precision("bf16", torch.device("cuda"))


def test_fp16_refused_on_cpu_with_the_fix():
    with pytest.raises(ConfigError, match="precision='fp16'.*CUDA.*'bf16' or 'fp32'"):
        Precision("fp16", CPU)


def test_fp32_runs_without_autocast_or_scaler():
    precision = Precision("fp32", CPU)
    assert precision.scaler is None
    with precision.autocast():
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.float32


def test_bf16_autocasts_matmuls_on_cpu_without_a_scaler():
    precision = Precision("bf16", CPU)
    assert precision.scaler is None
    layer = torch.nn.Linear(4, 4)
    with precision.autocast():
        output = layer(torch.ones(2, 4))
    assert output.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32


def test_backward_and_step_update_parameters():
    precision = Precision("bf16", CPU)
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    with precision.autocast():
        loss = layer(torch.ones(5, 3)).float().pow(2).mean()
    precision.backward(loss)
    precision.unscale_(optimizer)
    precision.step(optimizer)
    assert not torch.equal(before, layer.weight)


def test_state_dict_round_trip_and_mismatch():
    precision = Precision("fp32", CPU)
    state = precision.state_dict()
    Precision("fp32", CPU).load_state_dict(state)
    with pytest.raises(ConfigError, match="precision='bf16' does not match the checkpoint's precision='fp32'"):
        Precision("bf16", CPU).load_state_dict(state)
