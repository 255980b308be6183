import contextlib
import math

import pytest
import torch
from torch import nn

from trainwell import DataError
from trainwell.loop.precision import Precision
from trainwell.loop.state import TrainState
from trainwell.loop.step import StepRunner, loss_of
from trainwell.reliability.divergence import NonFiniteGuard


def _runner(loss_scale=1.0, max_grad_norm=None, **options):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    state = TrainState()
    state.begin_epoch(skipped=0)

    def train_step(batch):
        inputs, targets = batch
        return {"loss": nn.functional.mse_loss(model(inputs).squeeze(1), targets) * loss_scale}

    runner = StepRunner(
        train_step,
        torch.optim.SGD(model.parameters(), lr=0.1),
        Precision("fp32", torch.device("cpu")),
        model.parameters(),
        state=state,
        guard=NonFiniteGuard(3, on_skip=lambda *args, **kwargs: None),
        max_grad_norm=max_grad_norm,
        **options,
    )
    return runner, model, state


def _batch(size=8):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, 3, generator=generator), torch.randn(size, generator=generator)


def test_a_step_updates_the_weights_and_adds_its_loss_to_the_epoch():
    runner, model, state = _runner()
    before = model.weight.detach().clone()
    loss = runner(*_batch())
    assert not torch.equal(model.weight, before) and model.weight.grad is None  # stepped, then zeroed
    assert state.loss_count == 1 and state.loss_sum == pytest.approx(loss.item())


def test_a_non_finite_loss_skips_the_update_and_the_guard_counts_it():
    runner, model, state = _runner(loss_scale=math.nan)
    before = model.weight.detach().clone()
    runner(*_batch())
    assert torch.equal(model.weight, before)
    assert (runner.guard.skipped, runner.guard.consecutive, state.loss_count) == (1, 1, 0)


def test_the_gradient_norm_is_clipped_and_the_norm_before_clipping_kept():
    runner, model, _ = _runner(loss_scale=1000.0, max_grad_norm=0.5)
    before = model.weight.detach().clone()
    runner(*_batch())
    moved = (model.weight - before).norm() / 0.1  # SGD: the step is lr x gradient
    assert runner.last_grad_norm > 0.5 and moved <= 0.5 * 1.001


def test_micro_batches_take_the_same_step_as_the_whole_batch():
    whole, whole_model, _ = _runner()
    split, split_model, split_state = _runner()
    split.micro_batching.chunks = 4
    loss_whole, loss_split = whole(*_batch()), split(*_batch())
    assert torch.allclose(whole_model.weight, split_model.weight, atol=1e-6)
    assert loss_split.item() == pytest.approx(loss_whole.item(), rel=1e-6) and split_state.loss_count == 1


def test_out_of_memory_retries_the_batch_as_micro_batches():
    runner, model, state = _runner()
    calls = []
    real = runner.train_step

    def limited(batch):
        calls.append(len(batch[0]))
        if len(batch[0]) > 4:
            raise torch.OutOfMemoryError("simulated")
        return real(batch)

    runner.train_step = limited
    runner(*_batch(8))
    assert calls == [8, 4, 4] and runner.micro_batching.chunks == 2
    assert [event["event"] for event in state.events] == ["oom_split"]


def test_the_runner_state_round_trips():
    runner, _, _ = _runner(max_grad_norm=1.0)
    runner(*_batch())
    fresh, _, _ = _runner()
    fresh.load_state_dict(runner.state_dict())
    assert torch.equal(fresh.last_grad_norm, runner.last_grad_norm)


def test_a_step_that_returns_no_scalar_loss_is_refused_saying_what_it_returned():
    with pytest.raises(DataError, match=r"returned a tensor of shape \(3,\) as its loss: expected a scalar tensor"):
        loss_of({"loss": torch.zeros(3)})


def test_a_step_without_a_loss_key_is_refused_naming_the_keys():
    with pytest.raises(DataError, match=r"mapping with keys \['logits'\]: expected a scalar loss tensor"):
        loss_of({"logits": torch.zeros(3)})


# ---------------------------------------------------------------- gradient accumulation


def _batches(sizes, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, generator=generator), torch.randn(n, generator=generator)) for n in sizes]


def test_a_gradient_window_takes_one_step_equal_to_the_concatenated_batch():
    whole, whole_model, whole_state = _runner(max_grad_norm=0.5)
    windowed, windowed_model, windowed_state = _runner(max_grad_norm=0.5, accumulate=4)
    parts = _batches([8, 8, 8, 8])
    loss_whole = whole(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    stepped = []
    for index, (inputs, targets) in enumerate(parts):
        before = windowed_model.weight.detach().clone()
        windowed(inputs, targets, left_in_epoch=len(parts) - index)
        stepped.append((windowed.stepped, not torch.equal(before, windowed_model.weight)))
    assert stepped == [(False, False), (False, False), (False, False), (True, True)]
    assert torch.allclose(windowed_model.weight, whole_model.weight, rtol=1e-6, atol=1e-7)
    assert torch.allclose(windowed.last_grad_norm, whole.last_grad_norm, rtol=1e-6)
    assert windowed_state.loss_count == 1 and windowed_state.loss_sum == pytest.approx(loss_whole.item(), rel=1e-6)


def test_the_last_window_of_an_epoch_holds_the_batches_left():
    runner, _, state = _runner(accumulate=4)
    taken = []
    for index, (inputs, targets) in enumerate(_batches([8] * 6)):
        runner(inputs, targets, left_in_epoch=6 - index)
        taken.append(runner.stepped)
    assert taken == [False, False, False, True, False, True] and state.loss_count == 2
    assert runner.flush() is False  # nothing left over


def test_a_window_a_stream_ended_inside_is_stepped_on_the_mean_of_its_batches():
    whole, whole_model, _ = _runner()
    windowed, windowed_model, _ = _runner(accumulate=4)
    parts = _batches([8, 8])
    whole(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    for inputs, targets in parts:
        windowed(inputs, targets)  # no length: the window expects 4 batches
    assert not windowed.stepped and windowed.flush() is True
    assert torch.allclose(windowed_model.weight, whole_model.weight, rtol=1e-6, atol=1e-7)


def test_under_ddp_only_the_last_batch_of_a_window_synchronises_gradients():
    class Session:
        world_size = 1
        syncs = []

        def no_sync(self, last):
            self.syncs.append(last)
            return contextlib.nullcontext()

        def mean(self, tensor):
            return tensor

    session = Session()
    runner, _, _ = _runner(accumulate=3, session=session)
    for index, (inputs, targets) in enumerate(_batches([4] * 6)):
        runner(inputs, targets, left_in_epoch=6 - index)
    assert session.syncs == [False, False, True, False, False, True]


def test_a_window_survives_a_checkpoint_taken_inside_it():
    reference, reference_model, _ = _runner(accumulate=3)
    for index, (inputs, targets) in enumerate(_batches([8] * 3)):
        reference(inputs, targets, left_in_epoch=3 - index)
    first, _, _ = _runner(accumulate=3)
    parts = _batches([8] * 3)
    first(*parts[0], left_in_epoch=3)
    saved = first.state_dict()
    assert saved["window"]["batches"] == 1 and saved["window"]["grads"][0] is not None
    resumed, resumed_model, _ = _runner(accumulate=3)
    resumed.load_state_dict(saved)
    resumed(*parts[1], left_in_epoch=2)
    resumed(*parts[2], left_in_epoch=1)
    assert torch.equal(resumed_model.weight, reference_model.weight) and torch.equal(
        resumed_model.bias, reference_model.bias
    )
    assert resumed.state_dict()["window"] == {"batches": 0, "size": 3, "loss": None, "grads": None}


def _accumulation_data():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 6, generator=generator)
    targets = (inputs[:, 0] - inputs[:, 1] > 0).long()
    return inputs, targets


def _fit_batches(batch_size, epochs=2, resume=None, dropout=0.0, device_checks=False, **options):
    import trainwell
    from trainwell.data import TensorLoader

    class Judging(trainwell.Trainer):
        def _checks_on_device(self):  # as on an accelerator: bad steps judged on the device, no host sync
            return device_checks

    inputs, targets = _accumulation_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 2))
    trainer = Judging(epochs=epochs, lr=1e-2, schedule="onecycle", seed=0, progress=False, **options)
    loader = TensorLoader(inputs, targets, batch_size=batch_size, shuffle=False)
    trainer.fit(model, loader, [(inputs, targets)], resume=resume)
    return trainer, model


@pytest.mark.parametrize("device_checks", [False, True], ids=["host", "device"])
def test_accumulating_4_batches_of_16_trains_as_batches_of_64(device_checks, one_thread):
    large, large_model = _fit_batches(64, device_checks=device_checks)
    accumulated, accumulated_model = _fit_batches(16, accumulate_grad_batches=4, device_checks=device_checks)
    assert accumulated.global_step == large.global_step == 8 and accumulated.limits.steps_per_epoch == 4
    for mine, theirs in zip(accumulated_model.parameters(), large_model.parameters()):
        assert ((mine - theirs).abs().max() / theirs.abs().max()).item() <= 1e-5
    for mine, theirs in zip(accumulated.history, large.history):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["lr"] == pytest.approx(theirs["lr"], rel=1e-9)  # the schedule counts optimizer steps


@pytest.mark.slow
def test_a_run_stopped_inside_a_gradient_window_resumes_it_exactly(tmp_path, one_thread):
    import signal

    import trainwell
    from trainwell.callbacks import Callback

    class SignalInsideTheWindow(Callback):
        def on_batch_end(self, trainer, batch_index, loss, **kwargs):
            if trainer.epoch == 2 and batch_index == 5:  # 2 batches into the epoch's second window
                signal.raise_signal(signal.SIGTERM)  # handled before it returns

    options = {"epochs": 3, "accumulate_grad_batches": 4, "dropout": 0.2}
    reference, reference_model = _fit_batches(16, **options)
    with pytest.raises(trainwell.TrainingInterrupted, match="step 5") as stopped:
        _fit_batches(16, run_dir=tmp_path, callbacks=[SignalInsideTheWindow()], **options)
    saved = trainwell.load_checkpoint(stopped.value.checkpoint)["trainer"]["step"]["window"]
    assert saved["batches"] == 2 and saved["size"] == 4  # two batches' gradients, summed
    resumed, resumed_model = _fit_batches(16, run_dir=tmp_path, resume="auto", **options)
    assert [e for e in resumed.events if e["event"] == "resumed"][0]["step"] == 5
    for mine, theirs in zip(resumed_model.parameters(), reference_model.parameters()):
        assert torch.equal(mine, theirs)
    assert [row["train_loss"] for row in resumed.history] == [row["train_loss"] for row in reference.history]


def test_out_of_memory_inside_a_window_drops_its_earlier_batches_and_splits_the_rest():
    runner, model, state = _runner(accumulate=3)
    real = runner.train_step
    failed = []

    def limited(batch):
        if len(batch[0]) > 4 and state.global_step == 0 and not failed and runner.window.batches == 1:
            failed.append(True)
            raise torch.OutOfMemoryError("simulated")
        return real(batch)

    runner.train_step = limited
    parts = _batches([8, 8, 8])
    reference, reference_model, _ = _runner(accumulate=2)  # what is left: the window's last two batches
    for index, (inputs, targets) in enumerate(parts[1:]):
        reference(inputs, targets, left_in_epoch=2 - index)
    for index, (inputs, targets) in enumerate(parts):
        runner(inputs, targets, left_in_epoch=3 - index)
    assert [e["event"] for e in state.events] == ["oom_window_dropped", "oom_split"]
    assert state.events[0]["dropped_batches"] == 1 and runner.micro_batching.chunks == 2
    assert runner.stepped and state.loss_count == 1
    assert torch.allclose(model.weight, reference_model.weight, atol=1e-6)
