import io
from types import SimpleNamespace

from trainwell.callbacks import ProgressBar


def _trainer():
    return SimpleNamespace(
        steps_per_epoch=10,
        config=SimpleNamespace(epochs=2, log_every_steps=5),
        running_loss=lambda: 0.25,
        epoch_samples=320,
    )


def test_disabled_when_output_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    bar = ProgressBar()
    assert not bar.enabled
    bar.on_epoch_begin(_trainer(), epoch=1)
    assert bar._bar is None


def test_shows_loss_and_throughput_at_log_intervals(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    bar, trainer = ProgressBar(enabled=True), _trainer()
    bar.on_epoch_begin(trainer, epoch=1)
    for index in range(10):
        bar.on_batch_end(trainer, batch_index=index, loss=None)
    assert bar._bar.n == 10
    bar._bar.refresh()
    output = stream.getvalue()
    assert "epoch 1/2" in output and "loss=0.2500" in output and "samples_per_s" in output
    bar.on_epoch_end(trainer, epoch=1, metrics={})
    assert bar._bar is None
