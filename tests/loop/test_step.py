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
