import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import trainwell
from trainwell import TrainingInterrupted
from trainwell.callbacks import Callback
from trainwell.cli import main
from trainwell.data import TensorLoader
from trainwell.files.checkpoint import committed_checkpoints, latest_checkpoint, verify
from trainwell.reliability.preemption import SharedSignalCatcher, SignalCatcher

QUIET = {"progress": False}


@pytest.fixture(autouse=True)
def foreground_signals():
    """The handlers of a process started in the foreground, whatever this one started with.

    A shell starts a background job (``pytest ... &``, as some CI runners do) with SIGINT ignored,
    which trainwell leaves ignored (tested below): these tests send signals a foreground run acts on.
    """
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


class _Signal(Callback):
    """Sends this process ``signal_number`` (``times`` times) after step ``step``."""

    def __init__(self, step, signal_number, times=1):
        self.step, self.signal_number, self.times = step, signal_number, times

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        if trainer.global_step == self.step:
            for _ in range(self.times):
                _send(self.signal_number)


def _send(number):
    """Send this process a signal, handled before the call returns.

    Raised in this thread: os.kill's signal may be delivered to another thread (torch's, a logger's),
    and the main thread then runs the handler a little later (a step later, or two signals as one).
    The subprocess tests below send it from outside, as a scheduler does.
    """
    signal.raise_signal(number)


def _setup():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(192, 4, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    return (
        model,
        TensorLoader(inputs, targets, batch_size=32, seed=0),
        TensorLoader(inputs, targets, batch_size=96, shuffle=False),
    )


def test_sigterm_finishes_the_step_commits_a_checkpoint_and_resume_continues_exactly(tmp_path):
    reference, *loaders = _setup()
    trainwell.fit(reference, *loaders, epochs=3, seed=0, **QUIET)
    before = signal.getsignal(signal.SIGTERM)

    model, *loaders = _setup()
    with pytest.raises(
        TrainingInterrupted,
        match=(
            r"training stopped by SIGTERM at epoch 2, step 8; checkpoint '.*step-000000008\.pt' is committed\. "
            r"Resume with: trainwell train --resume auto --out .*run \(command line\), or fit\(\.\.\., run_dir='.*run', resume='auto'\)"
        ),
    ) as caught:
        trainwell.fit(
            model, *loaders, epochs=3, seed=0, run_dir=tmp_path / "run", callbacks=[_Signal(8, signal.SIGTERM)], **QUIET
        )
    stopped = caught.value
    assert signal.getsignal(signal.SIGTERM) == before  # handlers are put back
    assert (stopped.signal_number, stopped.run_dir) == (signal.SIGTERM, tmp_path / "run")
    manifest = verify(stopped.checkpoint)
    assert (manifest.step, manifest.kind) == (8, "interrupt")
    assert latest_checkpoint(tmp_path / "run")[0] == stopped.checkpoint
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "interrupted" and e["signal"] == "SIGTERM" for e in events)

    model, *loaders = _setup()
    result = trainwell.fit(model, *loaders, epochs=3, seed=0, run_dir=tmp_path / "run", resume="auto", **QUIET)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(mine, theirs)


def test_a_second_signal_stops_at_once_without_a_checkpoint(tmp_path):
    model, *loaders = _setup()
    with pytest.raises(KeyboardInterrupt):
        trainwell.fit(
            model, *loaders, epochs=3, run_dir=tmp_path, callbacks=[_Signal(3, signal.SIGINT, times=2)], **QUIET
        )
    assert committed_checkpoints(tmp_path / "checkpoints") == []  # the first epoch never ended, no interrupt checkpoint
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signals_are_left_alone_without_a_run_dir():
    seen = []

    class Look(Callback):
        def on_batch_end(self, trainer, batch_index, loss, **kwargs):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    model, *loaders = _setup()
    trainwell.fit(model, *loaders, epochs=1, callbacks=[Look()], **QUIET)
    assert set(seen) == {before}


def test_signal_catcher_records_the_first_signal_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with SignalCatcher() as catcher:
        assert signal.getsignal(signal.SIGTERM) != before
        _send(signal.SIGTERM)
        assert catcher.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == before  # a second one would act at once
    assert signal.getsignal(signal.SIGTERM) == before
    with catcher:  # a trainer used again starts without the old signal
        assert catcher.received is None


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_to_the_command_line_exits_cleanly_with_a_resume_hint_and_resume_finishes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainwell",
            "train",
            "--data",
            "digits",
            "--epochs",
            "4",
            "--out",
            str(run_dir),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not committed_checkpoints(run_dir / "checkpoints") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert f"Resume with: trainwell train --resume auto --out {run_dir}" in err
    path, checkpoint = latest_checkpoint(run_dir)
    assert checkpoint["epoch"] >= 1 and verify(path) is not None

    assert main(["train", "--resume", "auto", "--out", str(run_dir), "--quiet"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == list(range(1, 5))
    assert [row["event"] for row in rows].count("resumed") == 1
    assert "final (epoch 4)" in capsys.readouterr().out


def test_a_signal_the_process_ignores_stays_ignored(tmp_path):
    # A shell without job control starts a background job with SIGINT ignored: it is not to stop it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with SignalCatcher() as catcher:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM is still caught
        _send(signal.SIGINT)
        assert catcher.received is None
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    model, *loaders = _setup()
    result = trainwell.fit(
        model, *loaders, epochs=2, run_dir=tmp_path, callbacks=[_Signal(3, signal.SIGINT)], **QUIET
    )
    assert [row["epoch"] for row in result.history] == [1, 2]  # trained to the end


def test_a_shared_signal_waits_for_the_other_processes_before_it_counts():
    catcher = SharedSignalCatcher()
    with catcher:
        _send(signal.SIGTERM)
        assert catcher.pending == signal.SIGTERM and catcher.received is None


def test_stopping_on_a_signal_commits_a_checkpoint_records_it_and_says_how_to_resume():
    from pathlib import Path

    from trainwell.loop.state import TrainState
    from trainwell.reliability.preemption import stop_on_signal

    state = TrainState(epoch=2, global_step=40)
    committed = Path("runs/a/checkpoints/step-000000040.pt")
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at epoch 2, step 40.*--resume auto --out runs/a") as caught:
        stop_on_signal(signal.SIGTERM, lambda: committed, state, "runs/a")
    assert caught.value.checkpoint == committed and caught.value.signal_number == signal.SIGTERM
    assert state.events == [
        {"event": "interrupted", "epoch": 2, "step": 40, "signal": "SIGTERM", "checkpoint": str(committed)}
    ]
