import json
import logging
import math

import numpy
import pytest
import torch
from torch import nn

import trainwell
from trainwell import CheckpointMismatchError, ConfigError
from trainwell.callbacks import Callback
from trainwell.data import TensorLoader
from trainwell.files.checkpoint import committed_checkpoints

QUIET = {"progress": False}


# ---------------------------------------------------------------- in a new process, bit for bit


def _losses(path):
    """step -> every loss recorded for it (a step trained twice, before a kill and after the resume, has two)."""
    recorded = {}
    for line in path.read_text().splitlines():
        step, value = line.split()
        recorded.setdefault(int(step), []).append(float.fromhex(value))
    return recorded


def _run(zygote, tmp_path, name, **extra):
    spec = {
        "run_dir": str(tmp_path / name),
        "losses": str(tmp_path / f"{name}.txt"),
        "final": str(tmp_path / f"{name}.pt"),
        "every_steps": 4,
        **extra,
    }
    return zygote.run(spec)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("loader", "kill_steps"),
    [("tensor", [3, 9, 14, 41]), ("dataloader", [14, 30]), ("dataloader_generator", [22])],
)
def test_interrupted_runs_resumed_in_a_new_process_equal_the_uninterrupted_run(zygote, tmp_path, loader, kill_steps):
    """Dropout, shuffling, a one-cycle schedule, a GradScaler and early stopping all in play.

    Each run is killed (SIGKILL) after step k and resumed with resume="auto" in another process:
    from no checkpoint at all (k=3), from an epoch's end (k=9), from inside an epoch with steps
    to redo (k=14, 22, 30), and after the best epoch, whose weights early stopping restores at the
    end (k=41). Checkpoints every 4 steps.
    """
    assert _run(zygote, tmp_path, "reference", loader=loader) == 0
    reference = torch.load(tmp_path / "reference.pt")
    reference_losses = _losses(tmp_path / "reference.txt")
    history = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    epochs = [row for row in history if row["event"] == "epoch"]
    assert len(epochs) == 6 and len(reference_losses) == 48
    # Early stopping restored the best epoch's weights (epoch 3), not the last ones.
    best = torch.load(tmp_path / "reference" / "checkpoints" / "epoch-0003-step-000000024.pt", weights_only=True)[
        "model_state_dict"
    ]
    assert all(torch.equal(reference[key], best[key]) for key in reference)

    for kill_at in kill_steps:
        name = f"killed_at_{kill_at}"
        assert _run(zygote, tmp_path, name, loader=loader, kill_at_step=kill_at) == -9
        assert _run(zygote, tmp_path, name, loader=loader, resume="auto") == 0
        resumed = torch.load(tmp_path / f"{name}.pt")
        for key in reference:
            assert torch.equal(resumed[key], reference[key]), (kill_at, key)
        losses = _losses(tmp_path / f"{name}.txt")
        assert sorted(losses) == sorted(reference_losses)
        for step, values in losses.items():
            assert all(value == reference_losses[step][0] for value in values), (kill_at, step, values)
        if kill_at > 4:
            assert (
                any(len(values) == 2 for values in losses.values()) or kill_at % 4 == 1
            )  # steps redone after the kill
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        resumed_epochs = [row for row in rows if row["event"] == "epoch"]
        assert [row["epoch"] for row in resumed_epochs] == [row["epoch"] for row in epochs]  # no row lost or repeated
        for mine, theirs in zip(resumed_epochs, epochs):
            assert (mine["train_loss"], mine["val_loss"]) == (theirs["train_loss"], theirs["val_loss"])


# ---------------------------------------------------------------- resuming in this process


def _data(samples=160, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, 4, generator=generator)
    return inputs, (inputs[:, 0] > 0).long()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


class _StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_auto_without_a_checkpoint_starts_from_the_beginning(tmp_path):
    inputs, targets = _data()
    result = trainwell.fit(
        _model(), TensorLoader(inputs, targets, seed=0), epochs=2, run_dir=tmp_path / "run", resume="auto", **QUIET
    )
    assert len(result.history) == 2
    assert result.best_checkpoint is not None and result.best_checkpoint.parent == tmp_path / "run" / "checkpoints"


def test_resume_auto_needs_a_run_dir(tmp_path):
    inputs, targets = _data()
    with pytest.raises(ConfigError, match="resume='auto' needs run_dir"):
        trainwell.fit(_model(), TensorLoader(inputs, targets), resume="auto", **QUIET)
    with pytest.raises(ConfigError, match="resume='.*nowhere' does not exist"):
        trainwell.fit(_model(), TensorLoader(inputs, targets), resume=tmp_path / "nowhere", **QUIET)


def test_a_finished_run_reused_without_resume_is_still_refused(tmp_path):
    inputs, targets = _data()
    trainwell.fit(_model(), TensorLoader(inputs, targets), epochs=1, run_dir=tmp_path, **QUIET)
    with pytest.raises(
        ConfigError, match=r"already holds a run.*To continue that run from its last checkpoint, pass resume='auto'"
    ):
        trainwell.fit(_model(), TensorLoader(inputs, targets), epochs=1, run_dir=tmp_path, **QUIET)


def test_resuming_another_architecture_is_refused_naming_the_parameters(tmp_path):
    inputs, targets = _data()
    trainwell.fit(_model(), TensorLoader(inputs, targets), epochs=1, run_dir=tmp_path, **QUIET)
    wider = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    with pytest.raises(
        CheckpointMismatchError, match=r"different shape: 0\.weight \(checkpoint \(16, 4\), model \(32, 4\)\)"
    ):
        trainwell.fit(wider, TensorLoader(inputs, targets), epochs=2, run_dir=tmp_path, resume="auto", **QUIET)


def test_resume_from_an_explicit_checkpoint_into_a_new_run_dir(tmp_path):
    inputs, targets = _data()
    trainwell.fit(_model(), TensorLoader(inputs, targets, seed=0), epochs=2, run_dir=tmp_path / "first", **QUIET)
    (path,) = [m.path for m in committed_checkpoints(tmp_path / "first" / "checkpoints") if m.epoch == 1]
    model = _model()
    result = trainwell.fit(
        model, TensorLoader(inputs, targets, seed=0), epochs=3, run_dir=tmp_path / "second", resume=path, **QUIET
    )
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert (tmp_path / "second" / "checkpoints").is_dir()


def test_resuming_from_an_older_checkpoint_sets_the_newer_ones_aside(tmp_path):
    inputs, targets = _data()
    trainwell.fit(
        _model(), TensorLoader(inputs, targets, seed=0), epochs=3, run_dir=tmp_path, checkpoint_keep_last=3, **QUIET
    )
    older = [m for m in committed_checkpoints(tmp_path / "checkpoints") if m.epoch == 1][0].path
    trainwell.fit(_model(), TensorLoader(inputs, targets, seed=0), epochs=2, run_dir=tmp_path, resume=older, **QUIET)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert any(name.endswith(".superseded") and "epoch-0003" in name for name in names)
    assert committed_checkpoints(tmp_path / "checkpoints")[0].epoch == 2


def test_changed_options_are_named_in_a_warning(tmp_path, caplog):
    inputs, targets = _data()
    trainwell.fit(_model(), TensorLoader(inputs, targets), epochs=1, run_dir=tmp_path, lr=1e-3, **QUIET)
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        trainwell.fit(
            _model(), TensorLoader(inputs, targets), epochs=2, run_dir=tmp_path, lr=2e-3, resume="auto", **QUIET
        )
    assert "Resuming with changed options (epochs 1 -> 2; lr 0.001 -> 0.002)" in caplog.text


def test_stale_metrics_of_an_attempt_without_checkpoints_are_dropped(tmp_path):
    inputs, targets = _data()
    with pytest.raises(KeyboardInterrupt):
        trainwell.fit(
            _model(), TensorLoader(inputs, targets, seed=0), epochs=3, run_dir=tmp_path, callbacks=[_StopAt(2)], **QUIET
        )
    assert committed_checkpoints(tmp_path / "checkpoints") == []
    (tmp_path / "metrics.jsonl").write_text('{"event": "epoch", "epoch": 1}\n')
    trainwell.fit(_model(), TensorLoader(inputs, targets, seed=0), epochs=2, run_dir=tmp_path, resume="auto", **QUIET)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2]


def test_metrics_written_after_the_checkpoint_are_not_repeated(tmp_path):
    """A kill between an epoch's line in metrics.jsonl and its checkpoint must not leave that line twice."""
    inputs, targets = _data()

    class DieAfterTheLog(Callback):
        def on_epoch_end(self, trainer, epoch, metrics, **kwargs):
            if epoch == 2:
                raise KeyboardInterrupt  # runs after JSONLLogger, before the epoch-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        trainwell.fit(
            _model(),
            TensorLoader(inputs, targets, seed=0),
            epochs=3,
            run_dir=tmp_path,
            callbacks=[DieAfterTheLog()],
            **QUIET,
        )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2]
    trainwell.fit(_model(), TensorLoader(inputs, targets, seed=0), epochs=3, run_dir=tmp_path, resume="auto", **QUIET)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2, 3]
    assert [row["event"] for row in rows].count("resumed") == 1


# ---------------------------------------------------------------- the pieces


def test_running_sums_and_the_loader_seed_come_back_from_the_checkpoint(tmp_path):
    """The epoch's train_loss covers steps before and after the interruption; an unseeded TensorLoader
    (which draws its seed from torch's RNG) gets its order back although this process drew another seed."""
    inputs, targets = _data()

    def loader(global_seed):
        torch.manual_seed(global_seed)
        return TensorLoader(inputs, targets, batch_size=16)

    full_model, model = _model(), _model()
    full = trainwell.fit(full_model, loader(1), epochs=2, seed=0, **QUIET)
    with pytest.raises(KeyboardInterrupt):
        trainwell.fit(
            _model(),
            loader(1),
            epochs=2,
            seed=0,
            run_dir=tmp_path,
            checkpoint_every_steps=3,
            callbacks=[_StopAt(15)],
            **QUIET,
        )
    resumed = trainwell.fit(model, loader(2), epochs=2, seed=0, run_dir=tmp_path, resume="auto", **QUIET)
    for mine, theirs in zip(resumed.history, full.history):
        assert mine["train_loss"] == theirs["train_loss"] and math.isfinite(mine["train_loss"])
    for a, b in zip(model.parameters(), full_model.parameters()):
        assert torch.equal(a, b)


def test_a_weights_only_checkpoint_cannot_resume_training_and_says_what_to_do(tmp_path):
    model = _model()
    path = trainwell.save_checkpoint(tmp_path / "weights.pt", model, epoch=3)
    inputs, targets = _data()
    with pytest.raises(
        trainwell.CheckpointError,
        match=r"cannot resume training: it lacks the trainer's state \('trainer'\).*trainwell\.load_checkpoint",
    ):
        trainwell.fit(_model(), TensorLoader(inputs, targets), resume=path, **QUIET)


def test_numpy_numbers_in_the_history_are_stored_as_plain_numbers(tmp_path):
    class NumpyMetric(Callback):
        def on_eval_end(self, trainer, metrics, **kwargs):
            metrics["custom"] = numpy.float64(0.25)  # a float subclass: JSON takes it, a safe checkpoint would not

    inputs, targets = _data()
    trainwell.fit(
        _model(),
        TensorLoader(inputs, targets),
        TensorLoader(inputs, targets),
        epochs=1,
        run_dir=tmp_path,
        callbacks=[NumpyMetric()],
        **QUIET,
    )
    history = trainwell.load_checkpoint(tmp_path)["trainer"]["state"]["history"]
    assert history[0]["custom"] == 0.25 and type(history[0]["custom"]) is float


def test_grad_norm_is_logged_after_resuming_from_a_step_checkpoint_on_an_epochs_last_batch(tmp_path, one_thread):
    """A kill between an epoch's last step checkpoint and its validation: the resumed epoch's record keeps its grad_norm."""
    inputs, targets = _data()  # 160 samples, batches of 32: 5 steps per epoch, a step checkpoint on each last batch

    class KilledBeforeValidationEnds(Callback):
        def on_eval_end(self, trainer, metrics, **kwargs):
            if trainer.epoch == 2:
                raise KeyboardInterrupt

    def fit(run_dir, **options):
        trainwell.fit(
            _model(), TensorLoader(inputs, targets, batch_size=32, seed=0), TensorLoader(inputs, targets, shuffle=False),
            epochs=2, run_dir=run_dir, checkpoint_every_steps=5, **QUIET, **options,
        )

    fit(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "killed", callbacks=[KilledBeforeValidationEnds()])
    fit(tmp_path / "killed", resume="auto")

    def epoch_records(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {row["epoch"]: row for row in rows if row["event"] == "epoch"}

    resumed, whole = epoch_records(tmp_path / "killed")[2], epoch_records(tmp_path / "whole")[2]
    assert resumed.get("grad_norm") is not None and resumed["grad_norm"] == whole["grad_norm"]
    assert resumed["train_loss"] == whole["train_loss"]


def test_resume_names_a_sharded_checkpoint_directory_itself(tmp_path):
    """resume='.../step-000000004.dcp' is that checkpoint, not a directory to search for checkpoints."""
    from trainwell.files import sharded
    from trainwell.reliability.resume import locate

    path = tmp_path / "checkpoints" / "step-000000004.dcp"
    temporary = sharded.temporary_directory(path, 1)
    temporary.mkdir(parents=True)
    files = {sharded.REST: sharded.write_rest(temporary, {"step": 4, "sharded": True})}
    sharded.commit(temporary, path, files, step=4, epoch=0, val_loss=None, kind="step", healthy=True)
    found = locate(str(path), None)
    assert found[0] == path and found[1]["step"] == 4
