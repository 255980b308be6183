import logging

import pytest
import torch
from torch import nn

from trainwell import ConfigError, TrainConfig
from trainwell.loop.optimizers import build_optimizer, is_fused, param_groups, scaled_lr


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))


def test_biases_and_norm_scales_are_not_decayed_by_default():
    groups = param_groups(_model(), 0.01)
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.01, 2), (0.0, 4)]
    assert len(param_groups(_model(), 0.01, decay_bias_and_norm=True)) == 1
    assert len(param_groups(_model(), 0.0)) == 1


def test_frozen_parameters_are_left_out():
    model = _model()
    model[0].requires_grad_(False)
    assert sum(len(g["params"]) for g in param_groups(model, 0.01)) == 4


def test_adamw_is_fused_on_cpu():
    optimizer = build_optimizer(_model(), TrainConfig(), lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW) and is_fused(optimizer)
    assert optimizer.param_groups[0]["lr"] == 1e-3


def test_falls_back_to_foreach_where_fused_is_unsupported(monkeypatch):
    real_adamw = torch.optim.AdamW

    def no_fused_here(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real_adamw(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused_here)
    optimizer = build_optimizer(_model(), TrainConfig(), lr=1e-3)
    assert optimizer.defaults.get("foreach") is True and not is_fused(optimizer)


def test_factory_must_return_an_optimizer():
    with pytest.raises(ConfigError, match="returned list"):
        build_optimizer(_model(), TrainConfig(optimizer=lambda groups: []), lr=1e-3)


def test_the_lr_is_scaled_for_the_batch_against_the_reference(caplog):
    config = TrainConfig(lr=1e-3, reference_batch_size=32)
    assert scaled_lr(config, 32) == 1e-3
    with caplog.at_level(logging.INFO, logger="trainwell"):
        assert scaled_lr(config, 128) == pytest.approx(2e-3)
    assert "Batch size 128 differs from the reference 32: lr 0.001 scaled (sqrt rule) to 0.002" in caplog.text
    assert scaled_lr(config.replace(lr_scaling="linear"), 128) == pytest.approx(4e-3)
    assert scaled_lr(config.replace(lr_scaling="none"), 128) == 1e-3
    assert scaled_lr(TrainConfig(lr=0.5, reference_batch_size=1, lr_scaling="linear"), 64) == 1.0
