import io
from types import SimpleNamespace

from trainwell.callbacks import ProgressBar
from trainwell.callbacks import progress as progress_module


def _trainer(steps=100, reads=None):
    def running_loss():
        if reads is not None:
            reads.append(1)
        return 0.25

    return SimpleNamespace(
        steps_per_epoch=steps,
        batch_in_epoch=0,
        config=SimpleNamespace(epochs=2),
        running_loss=running_loss,
        optimizer=SimpleNamespace(param_groups=[{"lr": 1e-3}]),
    )


def test_disabled_when_output_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    bar = ProgressBar()
    assert not bar.enabled
    bar.on_epoch_begin(_trainer(), epoch=1)
    assert bar._bar is None


def test_redrawn_on_a_timer_with_loss_and_lr_and_closed_at_100_percent(monkeypatch):
    stream, clock, reads = io.StringIO(), [0.0], []
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    bar, trainer = ProgressBar(enabled=True, refresh_s=0.5), _trainer(reads=reads)
    bar.on_epoch_begin(trainer, epoch=1)
    for index in range(100):
        clock[0] += 0.02  # 2 s in all: redrawn after the first batch, every 0.5 s, and at the last
        bar.on_batch_end(trainer, batch_index=index, loss=None)
    # The loss is read from the device only at the redraws, never per step.
    assert len(reads) == 5
    output = stream.getvalue()
    assert "epoch 1/2" in output and "loss 0.25, lr 0.001" in output
    assert "100/100" in output and "100%" in output
    bar.on_epoch_end(trainer, epoch=1, metrics={})
    assert bar._bar is None


def test_an_epoch_resumed_inside_starts_at_its_batch(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    bar, trainer = ProgressBar(enabled=True), _trainer(steps=10)
    trainer.batch_in_epoch = 6
    bar.on_epoch_begin(trainer, epoch=2)
    assert bar._bar.n == 6
    bar.on_exception(trainer, error=RuntimeError())
    assert bar._bar is None
