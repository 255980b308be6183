import json
import logging
import math

import pytest
import torch
from torch import nn

from trainwell import DivergenceError, Trainer
from trainwell.callbacks import Callback
from trainwell.data import TensorLoader
from trainwell.reliability.divergence import LossSpikeDetector

QUIET = {"progress": False}


class _ScriptedLoss(nn.Module):
    """Cross-entropy, made NaN (or multiplied) on chosen 0-based training steps (validation is not counted)."""

    def __init__(self, bad_steps=(), spike_steps=(), spike=100.0):
        super().__init__()
        self.bad_steps, self.spike_steps, self.spike = set(bad_steps), set(spike_steps), spike
        self.calls = 0

    def forward(self, outputs, targets):
        loss = nn.functional.cross_entropy(outputs, targets)
        if not torch.is_grad_enabled():
            return loss
        step, self.calls = self.calls, self.calls + 1
        if step in self.bad_steps:
            return loss * math.nan
        return loss * self.spike if step in self.spike_steps else loss


class _Recorder(Callback):
    def __init__(self):
        self.weights, self.lrs = [], []

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        self.weights.append(trainer.module.weight.detach().clone())
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


def _fit(loss, steps=12, epochs=1, device_checks=False, **options):
    torch.manual_seed(0)
    inputs, targets = torch.randn(steps * 16, 4), torch.randint(0, 3, (steps * 16,))
    model = nn.Linear(4, 3)
    initial = model.weight.detach().clone()
    recorder = _Recorder()

    class ForcedMode(Trainer):
        def _checks_on_device(self):
            return device_checks

    trainer = ForcedMode(
        epochs=epochs,
        lr=0.01,
        loss_fn=loss,
        max_nonfinite_steps=3,
        callbacks=[recorder],
        log_every_steps=2,
        **QUIET,
        **options,
    )
    loader = TensorLoader(inputs, targets, batch_size=16, shuffle=False)
    return trainer, recorder, initial, lambda: trainer.fit(model, loader)


def test_three_bad_steps_in_a_row_roll_back_and_halve_the_lr_host_mode(caplog):
    trainer, recorder, initial, run = _fit(_ScriptedLoss(bad_steps={4, 5, 6}))
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        run()
    weights, lrs = recorder.weights, recorder.lrs
    assert torch.equal(weights[4], weights[3]) and torch.equal(weights[5], weights[3])  # skipped
    assert torch.equal(weights[6], initial)  # third in a row: back to the last good state (the start)
    assert lrs[:6] == [0.01] * 6 and lrs[6:] == [0.005] * 6
    assert not torch.equal(weights[7], weights[6])  # training goes on
    rollbacks = [e for e in trainer.events if e["event"] == "rollback"]
    assert rollbacks == [
        {"event": "rollback", "epoch": 1, "step": 6, "to_step": 0, "lr": 0.005, "lr_before": 0.01, "rollbacks": 1}
    ]
    assert [e["step"] for e in trainer.events if e["event"] == "nonfinite_skip"] == [4, 5, 6]
    assert (
        "3 bad steps in a row up to step 6: rolled back to the state of step 0 and cut the learning rate by 0.5"
        in caplog.text
    )


def test_three_bad_steps_in_a_row_roll_back_and_halve_the_lr_device_mode():
    """On the device the verdicts are read at each log interval (every 2 steps here), then acted on."""
    trainer, recorder, initial, run = _fit(_ScriptedLoss(bad_steps={4, 5, 6}), device_checks=True)
    run()
    weights, lrs = recorder.weights, recorder.lrs
    assert torch.equal(weights[6], weights[3])  # skipped on the device
    assert torch.equal(weights[7], initial)  # rolled back at the read after the 8th step
    assert lrs[:7] == [0.01] * 7 and lrs[7:] == [0.005] * 5
    assert [e["event"] for e in trainer.events].count("rollback") == 1


@pytest.mark.parametrize("device_checks", [False, True], ids=["host", "device"])
def test_bad_steps_that_never_stop_end_with_divergence_error_saying_what_was_tried(device_checks):
    trainer, recorder, _, run = _fit(_ScriptedLoss(bad_steps=range(2, 1000)), steps=20, device_checks=device_checks)
    with pytest.raises(
        DivergenceError,
        match=(
            r"non-finite for \d+ steps in a row.*Tried: skipping each bad step, then 3 rollbacks to the last good state "
            r"\(step 0\), cutting the learning rate by 0.5 each time \(peak lr 0.01 -> 0.00125\).*"
            # The advice quotes the lr as it is after the cuts, not the one training started with.
            r"Lower lr \(now 0.00125; try 0.000125\)"
        ),
    ):
        run()
    assert [e["lr"] for e in trainer.events if e["event"] == "rollback"] == [0.005, 0.0025, 0.00125]
    assert all(torch.isfinite(w).all() for w in recorder.weights)


def test_rollbacks_go_to_the_best_good_checkpoint_and_are_recorded_in_metrics_jsonl(tmp_path):
    """With a run directory the good states are committed checkpoints: no copy in memory."""
    from trainwell.files.checkpoint import committed_checkpoints

    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, metrics, **kwargs):
            snapshots[epoch] = trainer.module.weight.detach().clone()

    class ValLoss(Callback):  # epoch 2 is the best, epoch 3 worse: the rollback goes to epoch 2
        def on_eval_end(self, trainer, metrics, **kwargs):
            metrics["val_loss"] = [0.9, 0.5, 0.7, 0.6][trainer.epoch - 1]

    trainer, recorder, _, run = _fit(
        _ScriptedLoss(bad_steps={13, 14, 15}),
        steps=4,
        epochs=4,
        run_dir=tmp_path,
        early_stopping_patience=None,
        checkpoint_keep_last=1,
    )
    trainer.user_callbacks += [Snapshot(), ValLoss()]
    torch.manual_seed(0)
    loader = TensorLoader(torch.randn(64, 4), torch.randint(0, 3, (64,)), batch_size=16, shuffle=False)
    trainer.fit(nn.Linear(4, 3), loader, loader)
    assert trainer.healer._snapshot is None  # freed once a good checkpoint existed
    assert torch.equal(recorder.weights[15], snapshots[2])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (rollback,) = [r for r in records if r["event"] == "rollback"]
    assert (rollback["step"], rollback["to_step"], rollback["lr"]) == (15, 8, 0.005)
    # The newest checkpoint after the rollback is marked good again; the epoch with bad steps was not.
    assert [m.healthy for m in committed_checkpoints(tmp_path / "checkpoints") if m.epoch == 4] == [False]


def test_without_validation_the_newest_good_epoch_is_kept_in_memory():
    trainer, recorder, _, run = _fit(_ScriptedLoss(bad_steps={9, 10, 11}), steps=4, epochs=3)
    run()
    assert torch.equal(recorder.weights[11], recorder.weights[7])  # the end of epoch 2
    assert [e["to_step"] for e in trainer.events if e["event"] == "rollback"] == [8]


def test_loss_spikes_are_skipped_and_count_towards_a_rollback(caplog):
    trainer, recorder, _, run = _fit(_ScriptedLoss(spike_steps={25, 26, 27}), steps=30, loss_spike_factor=5.0)
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        run()
    weights = recorder.weights
    assert torch.equal(weights[25], weights[24]) and torch.equal(weights[26], weights[24])
    assert "Loss spike (" in caplog.text and "over 5x its running mean) at step 26: update skipped" in caplog.text
    assert [e["event"] for e in trainer.events].count("rollback") == 1


def test_loss_spikes_are_judged_on_the_device_without_a_sync():
    trainer, recorder, _, run = _fit(
        _ScriptedLoss(spike_steps={25, 26}), steps=30, loss_spike_factor=5.0, device_checks=True
    )
    run()
    assert torch.equal(recorder.weights[25], recorder.weights[24]) and torch.equal(
        recorder.weights[26], recorder.weights[24]
    )
    assert trainer.history[0]["nonfinite_steps"] == 2


def test_spike_detector_waits_for_its_warm_up_and_ignores_what_it_flags():
    detector = LossSpikeDetector(factor=3.0, warmup_steps=3)
    assert [detector.check(v) for v in (1.0, 10.0, 1.0)] == [None, None, None]  # still warming up
    mean = detector.mean
    assert detector.check(100.0) == "Loss spike (100, over 3x its running mean)" and detector.mean == mean
    flags = []
    device = LossSpikeDetector(factor=3.0, warmup_steps=3)
    for value in (1.0, 10.0, 1.0, 100.0, 1.0):
        flags.append(bool(device.spikes_on_device(torch.tensor(value), torch.tensor(False))))
    assert flags == [False, False, False, True, False]


# ---------------------------------------------------------------- the healer alone, without a trainer


def _healer(max_rollbacks=2):
    from trainwell.loop.precision import Precision
    from trainwell.loop.schedules import LearningRate, constant
    from trainwell.loop.state import TrainState
    from trainwell.observe.monitor import Monitor
    from trainwell.reliability.divergence import NonFiniteGuard
    from trainwell.reliability.healing import Healer

    torch.manual_seed(0)
    module = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    rates = LearningRate(optimizer, constant(100), per_step=False)
    state, guard = TrainState(), NonFiniteGuard(3, advice="Lower lr.")
    healer = Healer(
        max_rollbacks,
        0.5,
        None,
        module=module,
        optimizer=optimizer,
        precision=Precision("fp32", torch.device("cpu")),
        learning_rates=rates,
        state=state,
        guard=guard,
        monitor=Monitor("val_loss"),
        peak_lr=0.1,
    )
    return healer, module, optimizer, state


def test_a_healer_rolls_back_to_its_copy_and_halves_the_lr_until_its_rollbacks_are_used_up():
    healer, module, optimizer, state = _healer()
    initial = module.weight.detach().clone()
    healer.remember()
    with torch.no_grad():
        module.weight.add_(1.0)
    state.global_step = 5
    healer.on_diverged(run=3, step=5)
    assert torch.equal(module.weight, initial) and optimizer.param_groups[0]["lr"] == 0.05
    assert state.events[-1] == {
        "event": "rollback", "epoch": 0, "step": 5, "to_step": 0, "lr": 0.05, "lr_before": 0.1, "rollbacks": 1
    }
    healer.on_diverged(run=3, step=6)
    with pytest.raises(DivergenceError, match=r"2 rollbacks to the last good state \(step 0\).*peak lr 0.1 -> 0.025"):
        healer.on_diverged(run=3, step=7)
    fresh, *_ = _healer()
    fresh.load_state_dict(healer.state_dict())
    assert fresh.rollbacks == 2


def test_without_checkpoints_the_healer_keeps_the_best_good_epoch_by_its_monitor():
    healer, module, _, state = _healer()
    kept = []
    for val_loss, bad_step in ((0.9, False), (0.5, False), (0.7, False), (0.4, True)):
        with torch.no_grad():
            module.weight.add_(1.0)
        state.history.append({"val_loss": val_loss})
        healer.guard.skipped += bad_step  # an epoch with a skipped step is no state to return to
        healer.on_epoch_end()
        kept.append(healer._snapshot["model"]["weight"].clone())
    # Epoch 3 (0.7) is worse than epoch 2 and epoch 4 had a bad step: both keep epoch 2's copy.
    assert torch.equal(kept[2], kept[1]) and torch.equal(kept[3], kept[1]) and not torch.equal(kept[1], kept[0])
