import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import trainwell
from trainwell import ConfigError
from trainwell.distributed.environment import Environment, choose_backend, device_for, environment
from trainwell.distributed.session import Session, joined, on_primary

from ..distributed_children import COMPARED, TRAIN, data, free_port, model

# ---------------------------------------------------------------- several processes (gloo on the CPU)


def _results(out, world):
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world)], [
        torch.load(out / f"rank{rank}.pt") for rank in range(world)
    ]


def _close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _loss_on(weights, inputs, targets, batch_norm=False):
    network = model(batch_norm=batch_norm)
    network.load_state_dict(weights)
    network.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(network(inputs), targets).item()


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("loader", "reference_loader"), [("tensor", "tensor"), ("dataloader", "dataloader_distributed_sampler")]
)
def test_two_processes_train_as_one_process_does_over_the_same_global_batches(
    launcher, tmp_path, loader, reference_loader
):
    """Weights within 1e-5 of one process's, global metrics, and one set of run files written by rank 0."""
    epochs = 3
    one = {"out": str(tmp_path / "one"), "run_dir": str(tmp_path / "one-run"), "loader": reference_loader}
    assert launcher.run(1, {**one, "batch_size": 32, "epochs": epochs, "options": COMPARED}) == [0]
    two = {"out": str(tmp_path / "two"), "run_dir": str(tmp_path / "two-run"), "loader": loader}
    assert launcher.run(2, {**two, "batch_size": 16, "epochs": epochs, "options": COMPARED}) == [0, 0]

    [single], [single_weights] = _results(tmp_path / "one", 1)
    ranks, weights = _results(tmp_path / "two", 2)
    for key, reference in single_weights.items():
        assert torch.equal(weights[0][key], weights[1][key]), key  # DDP keeps the processes identical
        difference = (weights[0][key] - reference).abs().max().item()
        assert difference <= 1e-5 * reference.abs().max().item(), (key, difference)
    assert ranks[0]["run_info"]["peak_lr"] == single["run_info"]["peak_lr"] == 1e-3
    assert ranks[0]["run_info"]["global_batch_size"] == 32 and ranks[0]["run_info"]["world_size"] == 2

    # Every process reports the metrics of the whole data, which one process alone reports too.
    metrics = ["train_loss", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall"]
    for rank in ranks:
        assert len(rank["history"]) == epochs
        assert rank["unwrapped"] and rank["group_left"]  # the plain model back, the process group destroyed
        for mine, theirs in zip(rank["history"], single["history"]):
            for name in metrics:
                assert _close(mine[name], theirs[name]), (name, mine[name], theirs[name])
    # ... and not rank 0's share of the validation set: its own loss differs from the reported one.
    _, _, val_x, val_y = data()
    final = ranks[0]["history"][-1]["val_loss"]
    assert _close(final, _loss_on(weights[0], val_x, val_y))
    assert abs(final - _loss_on(weights[0], val_x[0::2], val_y[0::2])) > 1e-3

    # One set of run files: what one process writes, once.
    one_run, two_run = tmp_path / "one-run", tmp_path / "two-run"
    assert sorted(p.name for p in two_run.iterdir()) == sorted(p.name for p in one_run.iterdir())
    assert sorted(p.name for p in (two_run / "checkpoints").iterdir()) == sorted(
        p.name for p in (one_run / "checkpoints").iterdir()
    )
    records = _records(two_run)
    assert [r["event"] for r in records].count("run_start") == 1
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == list(range(1, epochs + 1))
    log = (two_run / "train.log").read_text()
    assert log.count(f"epoch 1/{epochs}") == 1 and "global batch 32 = 16 per process x 2 processes" in log


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_signal_to_one_process_stops_every_process_after_one_checkpoint_and_the_run_resumes_exactly(
    launcher, tmp_path
):
    """SIGTERM to rank 1 after step 10: both stop at step 12 (the next shared check, every 3 steps), and resume.

    Epochs have 8 steps; dropout makes the random states part of what resuming must restore.
    """
    spec = {"epochs": 3, "dropout": 0.2, "options": {**COMPARED, "checkpoint_every_steps": 5}}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "whole"), "run_dir": str(tmp_path / "whole-run")}) == [0, 0]
    [whole, _], [whole_weights, _] = _results(tmp_path / "whole", 2)

    run_dir, out = tmp_path / "run", tmp_path / "stopped"
    assert launcher.run(2, {**spec, "out": str(out), "run_dir": str(run_dir), "signal": [1, 10]}) == [3, 3]
    stopped, _ = _results(out, 2)
    committed = run_dir / "checkpoints" / "step-000000012.pt"
    for rank in stopped:
        assert rank["error"] == "TrainingInterrupted" and rank["step"] == 12
        assert rank["checkpoint"] == str(committed)
    assert committed.is_file()
    interrupted = [r for r in _records(run_dir) if r["event"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["step"] == 12

    out = tmp_path / "resumed"
    assert launcher.run(2, {**spec, "out": str(out), "run_dir": str(run_dir), "resume": "auto"}) == [0, 0]
    resumed, weights = _results(out, 2)
    for key, reference in whole_weights.items():
        assert torch.equal(weights[0][key], reference) and torch.equal(weights[1][key], reference), key
    for rank in resumed:
        assert [e["event"] for e in rank["events"]].count("resumed") == 1
        assert [row["val_loss"] for row in rank["history"]] == [row["val_loss"] for row in whole["history"]]
    epochs = [r for r in _records(run_dir) if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]  # no epoch lost or written twice
    assert [r["train_loss"] for r in epochs] == [row["train_loss"] for row in whole["history"]]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_out_of_memory_in_one_process_splits_its_batch_with_one_gradient_sync_per_step(launcher, tmp_path):
    """Rank 1 retries step 3 as micro-batches: without no_sync it would all-reduce twice in that step."""
    spec = {"epochs": 1, "options": COMPARED, "count_allreduces": True}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "plain")}) == [0, 0]
    assert launcher.run(2, {**spec, "out": str(tmp_path / "split"), "oom": [1, 3]}) == [0, 0]
    _, plain_weights = _results(tmp_path / "plain", 2)
    ranks, weights = _results(tmp_path / "split", 2)
    steps = TRAIN // 32
    assert [rank["allreduces"] for rank in ranks] == [steps, steps]  # one bucket: the model is tiny
    assert [e["event"] for e in ranks[1]["events"]].count("oom_split") == 1
    assert not any(e["event"] == "oom_split" for e in ranks[0]["events"])
    for key, reference in plain_weights[0].items():
        assert torch.equal(weights[0][key], weights[1][key])
        assert (weights[0][key] - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_accumulated_gradients_are_synchronised_once_per_step_and_equal_the_large_batch(launcher, tmp_path):
    """Batches of 8 accumulated 2 by 2 in each of 2 processes: one all-reduce per step, the steps of batches of 16."""
    spec = {"epochs": 1, "count_allreduces": True}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "plain"), "options": COMPARED}) == [0, 0]
    accumulated = {**COMPARED, "accumulate_grad_batches": 2}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "acc"), "batch_size": 8, "options": accumulated}) == [0, 0]
    _, plain_weights = _results(tmp_path / "plain", 2)
    ranks, weights = _results(tmp_path / "acc", 2)
    steps = TRAIN // 32
    assert [rank["allreduces"] for rank in ranks] == [steps, steps] and ranks[0]["step"] == steps
    for key, reference in plain_weights[0].items():
        assert torch.equal(weights[0][key], weights[1][key])
        assert (weights[0][key] - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()


@pytest.mark.multiprocess
def test_validation_uses_rank_0s_batch_norm_statistics_in_every_process(launcher, tmp_path):
    """BatchNorm statistics differ between processes after training; validation uses rank 0's, as checkpoints do."""
    assert launcher.run(2, {"out": str(tmp_path), "epochs": 1, "batch_norm": True, "options": COMPARED}) == [0, 0]
    ranks, weights = _results(tmp_path, 2)
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    _, _, val_x, val_y = data()
    assert _close(ranks[0]["history"][-1]["val_loss"], _loss_on(weights[0], val_x, val_y, batch_norm=True))


@pytest.mark.multiprocess
def test_a_stop_decided_in_one_process_stops_every_process(launcher, tmp_path):
    spec = {"out": str(tmp_path / "out"), "run_dir": str(tmp_path / "run"), "epochs": 3, "stop": [1, 1]}
    assert launcher.run(2, spec) == [0, 0]
    ranks, _ = _results(tmp_path / "out", 2)
    assert [len(rank["history"]) for rank in ranks] == [1, 1]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "epoch-0001-step-000000008.pt", weights_only=False)
    assert checkpoint["trainer"]["state"]["should_stop"]  # recorded as decided: a resumed run stops there too


@pytest.mark.multiprocess
def test_processes_that_disagree_refuse_to_train_in_every_process(launcher, tmp_path):
    assert launcher.run(2, {"out": str(tmp_path / "lr"), "rank_options": {"1": {"lr": 0.02}}}) == [3, 3]
    ranks, _ = _results(tmp_path / "lr", 2)
    for rank in ranks:
        assert rank["error"] == "ConfigError"
        assert "rank 1 has lr=0.02 where rank 0 has lr=0.001" in rank["message"]

    assert launcher.run(2, {"out": str(tmp_path / "batch"), "rank_batch_size": {"1": 8}}) == [3, 3]
    ranks, _ = _results(tmp_path / "batch", 2)
    for rank in ranks:
        assert rank["error"] == "DataError"
        assert "rank 0: batches of 16, 8 per epoch; rank 1: batches of 8, 16 per epoch" in rank["message"]


@pytest.mark.multiprocess
def test_an_existing_run_directory_is_refused_in_every_process(launcher, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert launcher.run(2, {"out": str(tmp_path / "out"), "run_dir": str(tmp_path / "run")}) == [3, 3]
    ranks, _ = _results(tmp_path / "out", 2)
    assert [rank["error"] for rank in ranks] == ["ConfigError", "ConfigError"]
    assert all("already holds a run" in rank["message"] for rank in ranks)


@pytest.mark.multiprocess
def test_rank_0_alone_holds_the_run_directory_and_a_held_one_is_refused_in_every_process(launcher, tmp_path):
    from trainwell.files.lock import RunDirLock

    with RunDirLock(tmp_path / "run"):
        assert launcher.run(2, {"out": str(tmp_path / "out"), "run_dir": str(tmp_path / "run")}) == [3, 3]
    ranks, _ = _results(tmp_path / "out", 2)
    assert [rank["error"] for rank in ranks] == ["RunDirLockedError", "RunDirLockedError"]
    assert all(f"is in use by process {os.getpid()}" in rank["message"] for rank in ranks)
    # Free, the run trains in both processes: only rank 0 takes the lock (rank 1 taking it too would be refused).
    assert launcher.run(2, {"out": str(tmp_path / "out"), "run_dir": str(tmp_path / "run")}) == [0, 0]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_torchrun_runs_the_train_command_in_two_processes(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}",
        "-m", "trainwell", "train", "--data", "iris", "--epochs", "2", "--quiet", "--out", str(run_dir),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("final (epoch 2)") + done.stdout.count("best (epoch") == 1  # the summary, once
    records = _records(run_dir)
    start = next(r for r in records if r["event"] == "run_start")
    assert (start["world_size"], start["batch_size"], start["global_batch_size"]) == (2, 16, 32)
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]
    assert (run_dir / "data.json").is_file() and (run_dir / "report.html").is_file()


# ---------------------------------------------------------------- the launch environment, backend and device


def test_one_process_is_left_alone():
    assert environment({}) is None
    assert environment({"WORLD_SIZE": "1", "RANK": "0"}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1234"},
            "WORLD_SIZE=2 is set, but MASTER_ADDR not: start the processes with torchrun",
        ),
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "but RANK not"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not valid: expected an integer ≥ 1"),
        (
            {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "RANK=2 is out of range for WORLD_SIZE=2",
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "x"},
            "MASTER_PORT='x' is not valid",
        ),
    ],
)
def test_a_broken_launch_environment_is_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        environment(env)


def test_an_incomplete_environment_fails_fit_before_any_work(monkeypatch, blob_loaders, classifier):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_PORT", "1234")
    with pytest.raises(ConfigError, match="MASTER_ADDR not: start the processes with torchrun"):
        trainwell.fit(classifier, *blob_loaders, epochs=1, progress=False)
    assert not torch.distributed.is_initialized()


def test_the_backend_is_nccl_on_cuda_and_gloo_on_cpus(monkeypatch):
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("auto", torch.device("cuda", 1)) == "nccl"
    assert choose_backend("gloo", torch.device("cpu")) == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="distributed_backend='nccl' needs CUDA GPUs, and this machine has none"):
        choose_backend("nccl", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="reduces CUDA tensors only, but device='cpu'"):
        choose_backend("nccl", torch.device("cpu"))
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    assert choose_backend("nccl", torch.device("cuda", 0)) == "nccl"


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    second = Environment(rank=3, local_rank=1, world_size=4, local_world_size=2)
    assert device_for("cpu", second) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for("auto", second) == torch.device("cpu")
    with pytest.raises(ConfigError, match="device='cuda' is not available"):
        device_for("cuda", second)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_for("auto", second) == torch.device("cuda", 1)
    assert device_for("cuda", second) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="device='cuda:0' names one GPU, but 2 processes run on this machine"):
        device_for("cuda:0", second)
    assert device_for("cuda:1", Environment(rank=1, local_rank=0, world_size=2, local_world_size=1)) == torch.device(
        "cuda", 1
    )
    with pytest.raises(
        ConfigError, match="LOCAL_RANK=2 has no GPU of its own: this machine has 2 CUDA device.*--nproc_per_node=2"
    ):
        device_for("cuda", Environment(rank=2, local_rank=2, world_size=3, local_world_size=3))
    with pytest.raises(ConfigError, match="device='mps' cannot train in several processes"):
        device_for("mps", second)


def test_distributed_backend_is_a_validated_option():
    assert trainwell.TrainConfig().distributed_backend == "auto"
    with pytest.raises(
        ConfigError, match="distributed_backend='mpi' is not a valid choice: expected one of 'auto', 'nccl', 'gloo'"
    ):
        trainwell.TrainConfig(distributed_backend="mpi")


# ---------------------------------------------------------------- one process: nothing changes


def test_one_process_trains_without_wrapper_or_process_group(blob_loaders, classifier):
    trainer = trainwell.Trainer(epochs=1, progress=False)
    trainer.fit(classifier, *blob_loaders)
    assert trainer.distributed is None and trainer.model is trainer.module
    assert not torch.distributed.is_initialized()
    assert "world_size" not in trainer.run_info


def test_a_process_group_of_one_initialised_by_the_program_is_respected(
    tmp_path, blob_loaders, classifier, monkeypatch
):
    from trainwell.system import is_primary_process

    monkeypatch.setenv("RANK", "5")  # the group's rank, not the variable, decides who writes files
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert is_primary_process()
        trainer = trainwell.Trainer(epochs=1, progress=False, run_dir=tmp_path / "run")
        trainer.fit(classifier, *blob_loaders)
        assert trainer.distributed is None and torch.distributed.is_initialized()  # left as the program set it up
        assert (tmp_path / "run" / "metrics.jsonl").is_file()
    finally:
        torch.distributed.destroy_process_group()


def test_one_process_joins_no_session():
    with joined(trainwell.TrainConfig()) as session:
        assert session is None and not torch.distributed.is_initialized()


def test_on_primary_just_calls_in_one_process():
    assert on_primary(None, lambda a, b=0: a + b, 1, b=2) == 3


# ---------------------------------------------------------------- the pieces that keep processes in step


def _session(world_size=2, rank=0):
    return Session(rank, rank, world_size, torch.device("cpu"), "gloo", created_group=False)


def test_resuming_inside_an_epoch_with_another_number_of_processes_is_refused(tmp_path, caplog):
    session = _session(world_size=4)
    with pytest.raises(
        ConfigError, match="written inside an epoch by 2 process\\(es\\), and 4 resume it.*--nproc_per_node=2"
    ):
        session.check_resumable(tmp_path / "step-9.pt", {"world_size": 2, "batch_in_epoch": 3})
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        session.check_resumable(tmp_path / "epoch-1.pt", {"world_size": 2, "batch_in_epoch": 0})
    assert "Resuming with 4 processes a run written by 2" in caplog.text
    with pytest.raises(ConfigError, match="by 1 process"):
        session.check_resumable(tmp_path / "old.pt", {"batch_in_epoch": 3})  # written before world_size was recorded


def test_other_ranks_log_warnings_only_marked_with_their_rank():
    from trainwell.distributed.session import _RankFilter

    rank_filter = _RankFilter(2)
    info = logging.LogRecord("trainwell", logging.INFO, __file__, 1, "epoch %d", (1,), None)
    warning = logging.LogRecord("trainwell", logging.WARNING, __file__, 1, "skipped %d", (3,), None)
    assert not rank_filter.filter(info)
    assert rank_filter.filter(warning) and warning.getMessage() == "[rank 2] skipped 3"


def test_checkpoints_record_how_many_processes_wrote_them(tmp_path, blob_loaders, classifier):
    trainwell.fit(classifier, *blob_loaders, epochs=1, progress=False, run_dir=tmp_path)
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("*.pt")), weights_only=False)
    assert checkpoint["world_size"] == 1
