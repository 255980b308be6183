import logging
import signal
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from trainwell.callbacks.process_sync import ProcessSync
from trainwell.exceptions import DivergenceError, TrainingInterrupted
from trainwell.reliability.preemption import SharedSignalCatcher


class FakeSession:
    """Stands in for the processes: ``any`` answers what the other processes would have said."""

    def __init__(self, others=(0, 0)):
        self.others = others
        self.calls = []

    def any(self, *values):
        self.calls.append(("any", values))
        return [max(mine, theirs) for mine, theirs in zip(values, self.others)]

    def barrier(self):
        self.calls.append(("barrier",))


def _signals():
    signals = SharedSignalCatcher()
    signals.pending, signals.received = None, None
    return signals


def _sync(session, signals=None, loader=None):
    return ProcessSync(session, signals or _signals(), loader)


def _trainer(step=0, should_stop=False):
    return SimpleNamespace(global_step=step, should_stop=should_stop, config=SimpleNamespace(log_every_steps=5))


def test_a_stop_wanted_by_another_process_stops_this_one(caplog):
    session = FakeSession(others=(1, 0))
    trainer = _trainer()
    with caplog.at_level(logging.INFO, logger="trainwell"):
        _sync(session).on_epoch_end(trainer, epoch=2, metrics={})
    assert trainer.should_stop and "another process decided to stop" in caplog.text
    trainer = _trainer(should_stop=True)
    _sync(FakeSession()).on_epoch_end(trainer, epoch=2, metrics={})
    assert trainer.should_stop


def test_signals_are_shared_only_at_the_log_interval():
    session = FakeSession(others=(0, signal.SIGTERM))
    trainer, signals = _trainer(step=4), _signals()
    sync = _sync(session, signals)
    sync.on_batch_end(trainer, batch_index=3, loss=None, stepped=True)
    assert session.calls == [] and signals.received is None
    trainer.global_step = 5
    sync.on_batch_end(trainer, batch_index=4, loss=None, stepped=True)
    assert session.calls == [("any", (0, 0))] and signals.received == signal.SIGTERM


def test_signals_are_not_shared_inside_a_gradient_window():
    session = FakeSession(others=(0, signal.SIGTERM))
    signals = _signals()
    # Step 10 was taken by an earlier batch (or when the last epoch ended): this batch took none.
    _sync(session, signals).on_batch_end(_trainer(step=10), batch_index=0, loss=None, stepped=False)
    assert session.calls == [] and signals.received is None


def test_a_pending_signal_here_is_sent_to_the_others():
    session = FakeSession()
    signals = _signals()
    signals.pending = signal.SIGINT
    _sync(session, signals).on_batch_end(_trainer(step=10), batch_index=9, loss=None, stepped=True)
    assert session.calls == [("any", (0, signal.SIGINT))] and signals.received == signal.SIGINT


def test_the_distributed_sampler_gets_each_epoch():
    dataset = TensorDataset(torch.zeros(8, 1))
    loader = DataLoader(dataset, batch_size=2, sampler=DistributedSampler(dataset, num_replicas=2, rank=0))
    _sync(FakeSession(), loader=loader).on_epoch_begin(_trainer(), epoch=3)
    assert loader.sampler.epoch == 2


def test_processes_wait_for_each_other_at_the_end_and_after_a_shared_interruption_only():
    session = FakeSession()
    sync = _sync(session)
    sync.on_train_end(_trainer())
    sync.on_exception(_trainer(), error=DivergenceError("diverged"))
    assert session.calls == [("barrier",)]
    sync.on_exception(_trainer(), error=TrainingInterrupted("stopped", signal_number=signal.SIGTERM))
    assert session.calls == [("barrier",), ("barrier",)]
