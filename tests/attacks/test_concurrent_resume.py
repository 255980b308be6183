"""The same job started twice on one run directory (a scheduler that double-starts it): one runs, the other is told why not."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from .conftest import last_line


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_resumes_started_together_run_once_and_the_second_names_the_first(tmp_path):
    """Before: both ran to completion, metrics.jsonl held two run_start lines and every epoch twice."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "trainwell",
        "train",
        "--resume",
        "auto",
        "--out",
        str(run_dir),
        "--epochs",
        "6",
        "--quiet",
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(process.wait(timeout=600), process.stderr.read(), process.pid) for process in processes]
    statuses = sorted(status for status, _, _ in outcomes)
    assert statuses == [0, 1], [last_line(stderr) for _, stderr, _ in outcomes]
    (winner,) = [pid for status, _, pid in outcomes if status == 0]
    (refused,) = [stderr for status, stderr, _ in outcomes if status == 1]
    assert "Traceback" not in refused
    assert last_line(refused).startswith(
        f"trainwell train: failed: run_dir '{run_dir}' is in use by process {winner} on host '{socket.gethostname()}'"
    )
    records = _records(run_dir)
    epochs = [row["epoch"] for row in records if row["event"] == "epoch"]
    assert [row["event"] for row in records].count("run_start") == 1 and epochs == sorted(set(epochs))


def test_a_resume_while_another_process_holds_the_run_is_refused_at_once(finished_run, trainwell_command):
    from trainwell.files.lock import RunDirLock

    with RunDirLock(finished_run):
        status, stderr = trainwell_command(
            "train", "--resume", "auto", "--out", finished_run, "--epochs", "3", "--quiet"
        )
    assert status == 1 and "Traceback" not in stderr
    assert f"is in use by process {os.getpid()} on host" in last_line(stderr)
    assert "To wait for it instead, set run_dir_wait_s" in last_line(stderr)
    assert [row["epoch"] for row in _records(finished_run) if row["event"] == "epoch"] == [1, 2]  # nothing written


def test_with_run_dir_wait_s_a_resume_waits_for_the_holder_then_continues(
    finished_run, tmp_path, trainwell_command, caplog
):
    config = tmp_path / "wait.yaml"
    config.write_text("run_dir_wait_s: 120\n")
    from trainwell.files.lock import RunDirLock

    holder = RunDirLock(finished_run)
    holder.acquire()
    threading.Timer(1.0, holder.release).start()
    status, stderr = trainwell_command(
        "train", "--config", config, "--resume", "auto", "--out", finished_run, "--epochs", "3", "--quiet"
    )
    assert status == 0, last_line(stderr)
    assert (
        f"is in use by process {os.getpid()}" in caplog.text
        and "waiting for it to end (run_dir_wait_s=120.0)" in caplog.text
    )
    assert "run_dir_wait_s 0.0 -> 120.0" not in caplog.text  # how long to wait changes nothing in the training
    assert [row["epoch"] for row in _records(finished_run) if row["event"] == "epoch"] == [1, 2, 3]
