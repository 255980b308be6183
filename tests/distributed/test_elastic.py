"""torchrun's elastic launch: two machines (simulated on this one) and a group restarted after a process died."""

import json
import os
import signal
import time

import pytest
import torch

from trainwell.distributed.elastic import restart_count, resume_after_restart, shared_store_warning
from trainwell.files.manifest import manifest_text

from ..distributed_children import COMPARED, free_port, rank_record, rank_weights, stop, torchrun


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_equal(weights, reference):
    assert weights.keys() == reference.keys()
    for key in reference:
        assert torch.equal(weights[key], reference[key]), key


# ---------------------------------------------------------------- several machines


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_machines_under_the_c10d_rendezvous_train_as_two_processes_on_one_machine(launcher, tmp_path):
    """Two torchrun launches (--nnodes=2, one process each, c10d rendezvous on 127.0.0.1): the same weights as
    two processes of one machine, bit for bit; rank 0 alone writes, into its own run_dir (the other node's is unused)."""
    spec = {"epochs": 2, "batch_size": 16, "options": COMPARED}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "one-machine")}) == [0, 0]
    reference = rank_weights(tmp_path / "one-machine", 0)

    endpoint = f"127.0.0.1:{free_port()}"
    nodes = []
    for node in (0, 1):
        arguments = [
            "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", "--rdzv-id=two-machines", "--local-addr=127.0.0.1",
        ]  # fmt: skip
        node_spec = {**spec, "out": str(tmp_path / f"node{node}"), "run_dir": str(tmp_path / f"node{node}-run")}
        nodes.append(torchrun(arguments, node_spec, tmp_path / f"node{node}.json"))
    assert stop(nodes, timeout=240) == [0, 0], [(tmp_path / f"node{n}.log").read_text()[-3000:] for n in (0, 1)]

    # The rendezvous decides which machine holds rank 0 (c10d ignores --node-rank).
    first = 0 if (tmp_path / "node0" / "rank0.json").exists() else 1
    other = 1 - first
    for node, rank in ((first, 0), (other, 1)):
        record = rank_record(tmp_path / f"node{node}", rank)
        assert record["place"] == {"RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2", "GROUP_RANK": str(rank)}
        _assert_equal(rank_weights(tmp_path / f"node{node}", rank), reference)
    assert (tmp_path / f"node{first}-run" / "checkpoints").is_dir()
    assert not (tmp_path / f"node{other}-run").exists()
    records = _records(tmp_path / f"node{first}-run")
    start = next(r for r in records if r["event"] == "run_start")
    assert (start["world_size"], start["global_batch_size"]) == (2, 32)
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]


# ---------------------------------------------------------------- a process dies: torchrun restarts the group


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_killed_process_is_restarted_by_torchrun_and_the_run_resumes_exactly(launcher, tmp_path):
    """SIGKILL to rank 1 (by pid) after step 10 of 16: torchrun --max-restarts=1 starts both processes again,
    which resume from step 8 (checkpoints every 4 steps) without being asked, record a restart, and end with
    the weights of a run never killed, bit for bit (dropout in play: the random states are restored too)."""
    spec = {"epochs": 2, "batch_size": 16, "dropout": 0.2, "options": {**COMPARED, "checkpoint_every_steps": 4}}
    assert launcher.run(2, {**spec, "out": str(tmp_path / "whole"), "run_dir": str(tmp_path / "whole-run")}) == [0, 0]
    reference = rank_weights(tmp_path / "whole", 0)

    out, run_dir = tmp_path / "restarted", tmp_path / "run"
    arguments = [
        "--nnodes=1", "--nproc-per-node=2", "--max-restarts=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--local-addr=127.0.0.1",
    ]  # fmt: skip
    restart_spec = {**spec, "out": str(out), "run_dir": str(run_dir), "pause": [1, 10]}
    # Every attempt with a store of its own (see shared_store_warning).
    group = torchrun(arguments, restart_spec, tmp_path / "spec.json", env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    try:
        deadline = time.monotonic() + 180
        while not (out / "paused").exists() and group.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int((out / "paused").read_text())
        assert pid == int((out / "pids" / "0-1").read_text())  # rank 1 of the first attempt
        os.kill(pid, signal.SIGKILL)
    finally:
        codes = stop([group], timeout=240)
    assert codes == [0], (tmp_path / "spec.log").read_text()[-3000:]
    assert sorted(p.name for p in (out / "pids").iterdir()) == ["0-0", "0-1", "1-0", "1-1"]  # two attempts

    for rank in (0, 1):
        _assert_equal(rank_weights(out, rank), reference)
        events = [(e["event"], e.get("step")) for e in rank_record(out, rank)["events"]]
        assert events == [("resumed", 8), ("restart", 8)]
    records = _records(run_dir)
    restarts = [r for r in records if r["event"] == "restart"]
    assert len(restarts) == 1 and (restarts[0]["restart"], restarts[0]["from_step"]) == (1, 8)
    whole = _records(tmp_path / "whole-run")
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]  # no epoch lost or written twice
    assert [r["train_loss"] for r in epochs] == [r["train_loss"] for r in whole if r["event"] == "epoch"]


# ---------------------------------------------------------------- what a restarted process decides


def test_torchrun_says_which_attempt_this_is():
    assert restart_count({}) == 0
    assert restart_count({"TORCHELASTIC_RESTART_COUNT": "3"}) == 3
    assert restart_count({"TORCHELASTIC_RESTART_COUNT": "junk"}) == 0


class _Group:
    """A session whose processes agree on ``restarts``."""

    def __init__(self, restarts):
        self.restarts = restarts


def test_a_restarted_group_resumes_from_the_newest_checkpoint_of_its_run_dir(tmp_path, caplog):
    run_dir = tmp_path / "run"
    assert resume_after_restart(None, run_dir, _Group(0)) is None  # the first attempt: as asked
    assert resume_after_restart(None, run_dir, _Group(2)) == "auto"
    assert resume_after_restart(run_dir / "checkpoints" / "step-000000008.pt", run_dir, _Group(1)) == "auto"
    # Fine-tuning from another run's checkpoint: until this run commits one of its own, that one.
    other = tmp_path / "other" / "epoch-0003-step-000000030.pt"
    assert resume_after_restart(other, run_dir, _Group(1)) == other
    (run_dir / "checkpoints").mkdir(parents=True)
    committed = run_dir / "checkpoints" / "step-000000004.pt"
    (run_dir / "checkpoints" / "step-000000004.manifest.json").write_bytes(
        manifest_text(committed, "0" * 64, 1, step=4, epoch=0, val_loss=None, kind="step", healthy=True)
    )
    assert resume_after_restart(other, run_dir, _Group(1)) == "auto"
    with caplog.at_level("WARNING", logger="trainwell"):
        assert resume_after_restart(None, None, _Group(1)) is None
    assert "no run_dir to resume from: training starts over" in caplog.text


def test_restarts_with_the_store_torchrun_shares_are_warned_about():
    shared = {"TORCHELASTIC_MAX_RESTARTS": "2", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in shared_store_warning(shared)
    assert shared_store_warning({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None
    assert shared_store_warning({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    assert shared_store_warning({}) is None
