import logging

import pytest
import torch
from torch import nn

import trainwell
from trainwell import Trainer, TrainwellError
from trainwell.data import TensorLoader
from trainwell.reliability.oom import split

QUIET = {"progress": False}


class _MemoryLimited(nn.Module):
    """An MLP that raises CUDA's out-of-memory error on batches of more than ``limit`` samples.

    ``limit_without_grad`` applies when no gradients are recorded (the Trainer's first-batch check,
    validation), which needs less memory than a training step.
    """

    def __init__(self, limit, limit_without_grad=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
        self.limit = limit
        self.limit_without_grad = limit if limit_without_grad is None else limit_without_grad
        self.sizes = []

    def forward(self, inputs):
        limit = self.limit if torch.is_grad_enabled() else self.limit_without_grad
        if len(inputs) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        if torch.is_grad_enabled():
            self.sizes.append(len(inputs))
        return self.net(inputs)


def _loaders():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 4, generator=generator)
    targets = (inputs[:, 0] + inputs[:, 1] > 0).long() + (inputs[:, 2] > 1).long()
    return TensorLoader(inputs, targets, batch_size=32, seed=0), TensorLoader(
        inputs, targets, batch_size=256, shuffle=False
    )


@pytest.mark.parametrize("device_checks", [False, True], ids=["host", "device"])
def test_out_of_memory_splits_the_batch_and_reaches_the_same_weights(device_checks, caplog):
    class ForcedMode(Trainer):
        def _checks_on_device(self):
            return device_checks

    whole = _MemoryLimited(limit=10_000)
    unsplit = ForcedMode(epochs=3, lr=0.01, seed=0, **QUIET).fit(whole, *_loaders())
    split_model = _MemoryLimited(limit=10, limit_without_grad=10_000)
    trainer = ForcedMode(epochs=3, lr=0.01, seed=0, **QUIET)
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        result = trainer.fit(split_model, *_loaders())

    # 32 did not fit, nor 2 x 16; 4 micro-batches of 8 did, and every later step used them.
    assert split_model.sizes[:4] == [8, 8, 8, 8] and set(split_model.sizes) == {8}
    assert len(split_model.sizes) == 4 * 3 * 8
    assert [(e["micro_batches"], e["batch_size"]) for e in trainer.events if e["event"] == "oom_split"] == [
        (2, 32),
        (4, 32),
    ]
    assert (
        "retrying the batch of 32 as 4 micro-batches with gradient accumulation (same effective batch)" in caplog.text
    )
    for mine, theirs in zip(split_model.parameters(), whole.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(result.history, unsplit.history):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]  # it trained


def test_a_single_sample_that_does_not_fit_fails_with_what_to_do():
    with pytest.raises(
        trainwell.OutOfMemoryError,
        match=(
            r"a single training sample does not fit in memory on cpu: it ran out of memory with the batch of 32 split into "
            r"micro-batches of 1 sample.*precision='bf16'"
        ),
    ) as caught:
        trainwell.fit(_MemoryLimited(limit=0, limit_without_grad=10_000), _loaders()[0], epochs=1, **QUIET)
    assert isinstance(caught.value, TrainwellError) and isinstance(caught.value, MemoryError)


def test_the_first_batch_check_falls_back_to_one_sample_and_fails_clearly_when_even_that_does_not_fit():
    model = _MemoryLimited(limit=8, limit_without_grad=1)
    result = trainwell.fit(model, _loaders()[0], epochs=1, **QUIET)
    assert len(result.history) == 1 and set(model.sizes) == {8}
    with pytest.raises(trainwell.OutOfMemoryError, match="ran out of memory in a forward pass without gradients"):
        trainwell.fit(_MemoryLimited(limit=0, limit_without_grad=0), _loaders()[0], epochs=1, **QUIET)


def test_splitting_can_be_turned_off():
    with pytest.raises(torch.OutOfMemoryError, match="simulated"):
        trainwell.fit(
            _MemoryLimited(limit=10, limit_without_grad=10_000),
            _loaders()[0],
            epochs=1,
            split_batch_on_oom=False,
            **QUIET,
        )


def test_split_cuts_tensors_tuples_and_dicts_along_the_samples():
    batch = {"tokens": torch.arange(10).reshape(5, 2), "extra": (torch.arange(5), "keep")}
    parts = split(batch, 2)
    assert [p["tokens"].shape[0] for p in parts] == [3, 2]
    assert parts[1]["extra"][0].tolist() == [3, 4] and parts[1]["extra"][1] == "keep"


# ---------------------------------------------------------------- the splitting policy alone


def test_the_split_doubles_until_the_batch_fits_and_gives_up_at_single_samples():
    from trainwell.exceptions import OutOfMemoryError
    from trainwell.reliability.oom import MicroBatching

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sizes, finished, events = [], [], []

    def accumulate(inputs, targets, weight, last):
        if len(inputs) > 3:
            raise torch.OutOfMemoryError("simulated")
        sizes.append((len(inputs), last))
        return inputs.mean() * weight

    splitting = MicroBatching()
    loss = splitting.recover(
        torch.arange(10.0),
        torch.arange(10.0),
        accumulate,
        finished.append,
        optimizer=optimizer,
        device=torch.device("cpu"),
        step=7,
        record_event=lambda *a, **fields: events.append(fields),
    )
    assert splitting.chunks == 4 and sizes == [(3, False), (3, False), (2, False), (2, True)]
    assert [event["micro_batches"] for event in events] == [2, 4] and loss.item() == pytest.approx(4.5)
    assert len(finished) == 1
    restored = MicroBatching()
    restored.load_state_dict(splitting.state_dict())
    assert restored.chunks == 4

    def never(*args):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(OutOfMemoryError, match="single training sample does not fit"):
        MicroBatching().recover(
            torch.zeros(3, 1),
            torch.zeros(3),
            never,
            finished.append,
            optimizer=optimizer,
            device=torch.device("cpu"),
            step=0,
            record_event=lambda *a, **k: None,
        )
