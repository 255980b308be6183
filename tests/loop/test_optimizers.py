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


# ---------------------------------------------------------------- optimizers of the user's own


def _regression_data(samples=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.linspace(-3, 3, samples).unsqueeze(1)
    return inputs, torch.sin(inputs) + 0.05 * torch.randn(samples, 1, generator=generator)


def _sine_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))


def test_a_factory_gets_the_plain_parameters_and_its_own_settings_win(caplog):
    import trainwell

    inputs, targets = _regression_data()
    model = _sine_model()
    with caplog.at_level(logging.INFO, logger="trainwell"):
        trainer = trainwell.Trainer(
            epochs=1,
            lr=1e-3,
            weight_decay=0.05,
            optimizer=lambda params: torch.optim.Adadelta(params, lr=1.0, weight_decay=0.0),
            progress=False,
        )
        trainer.fit(model, [(inputs, targets)])
    groups = trainer.optimizer.param_groups
    assert len(groups) == 1 and len(groups[0]["params"]) == 4  # no per-group options of trainwell's
    assert groups[0]["weight_decay"] == 0.0 and groups[0]["lr"] == 1.0
    assert trainer.peak_lr == 1.0 and trainer.run_info["peak_lr"] == 1.0 and trainer.history[0]["lr"] == 1.0
    assert "lr 1 (constant schedule)" in caplog.text  # the start-up line says the optimizer's lr
    assert "lr=0.001, weight_decay=0.05 apply to the built-in optimizers only" in caplog.text


def test_a_factory_sgd_trains_at_its_own_lr():
    import trainwell

    inputs, targets = _regression_data()
    trainer = trainwell.Trainer(epochs=2, optimizer=lambda params: torch.optim.SGD(params, lr=0.2), progress=False)
    trainer.fit(_sine_model(), [(inputs, targets)])
    assert [row["lr"] for row in trainer.history] == [0.2, 0.2] and trainer.peak_lr == 0.2


def test_a_factory_of_parameters_it_was_not_given_is_refused():
    other = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="not among the model's 6 trainable ones"):
        build_optimizer(
            _model(), TrainConfig(optimizer=lambda params: torch.optim.SGD(other.parameters(), lr=0.1)), 1e-3
        )


def test_lbfgs_reaches_the_loss_of_the_hand_written_lbfgs_loop(one_thread):
    """The sine-wave example: full-batch LBFGS, whose step calls back for the loss several times."""
    import trainwell

    inputs, targets = _regression_data()
    plain = _sine_model()
    optimizer = torch.optim.LBFGS(plain.parameters(), lr=0.5, max_iter=10)
    plain_losses = []

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(plain(inputs), targets)
        loss.backward()
        return loss

    for _ in range(5):
        plain_losses.append(optimizer.step(closure).item())
    with torch.no_grad():
        plain_final = float(nn.functional.mse_loss(plain(inputs), targets))

    model = _sine_model()
    result = trainwell.fit(
        model,
        [(inputs, targets)],
        [(inputs, targets)],
        epochs=5,
        optimizer=lambda params: torch.optim.LBFGS(params, lr=0.5, max_iter=10),
        max_grad_norm=None,
        early_stopping_patience=None,
        restore_best_weights=False,
        progress=False,
    )
    assert [row["train_loss"] for row in result.history] == pytest.approx(plain_losses, rel=1e-6)
    assert result.history[-1]["val_loss"] == pytest.approx(plain_final, rel=1e-6)
    assert plain_final < 0.05 * plain_losses[0]  # LBFGS did fit the sine
    for mine, theirs in zip(model.parameters(), plain.parameters()):
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-7)


def test_closure_optimizers_refuse_what_they_cannot_do():
    import trainwell

    inputs, targets = _regression_data()
    lbfgs = lambda params: torch.optim.LBFGS(params)  # noqa: E731
    with pytest.raises(ConfigError, match="accumulate_grad_batches=2 with optimizer=LBFGS"):
        trainwell.fit(_sine_model(), [(inputs, targets)], optimizer=lbfgs, accumulate_grad_batches=2, progress=False)


def test_a_bad_first_evaluation_leaves_lbfgs_without_an_update():
    import trainwell

    class NaNAtFirst(trainwell.Trainer):
        def train_step(self, batch):
            loss = super().train_step(batch)["loss"]
            return loss * float("nan") if self.global_step == 0 else loss

    inputs, targets = _regression_data()
    model = _sine_model()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = NaNAtFirst(epochs=1, optimizer=lambda params: torch.optim.LBFGS(params), progress=False)
    # Its only step skipped, the run ends with the model it began with: fit says so instead of returning.
    with pytest.raises(trainwell.DivergenceError, match="all 1 steps had a non-finite loss"):
        trainer.fit(model, [(inputs, targets)])
    assert trainer.guard.skipped == 1 and trainer.history[0]["nonfinite_steps"] == 1
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_needs_closure():
    from trainwell.loop.optimizers import needs_closure

    parameter = [torch.zeros(1, requires_grad=True)]
    assert needs_closure(torch.optim.LBFGS(parameter))
    assert not any(needs_closure(o) for o in (torch.optim.SGD(parameter, lr=0.1), torch.optim.Adam(parameter)))
