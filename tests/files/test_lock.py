import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from trainwell import RunDirLockedError, TrainwellError
from trainwell.files.lock import RunDirLock

# A process that takes the lock, says so, and sleeps until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
from trainwell.files.lock import RunDirLock
RunDirLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(run_dir):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_naming_the_pid_and_host(tmp_path):
    with RunDirLock(tmp_path / "run") as first:
        assert first.held
        holder = json.loads((tmp_path / "run" / ".lock").read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(RunDirLockedError) as caught:
            RunDirLock(tmp_path / "run").acquire()
    message = str(caught.value)
    assert isinstance(caught.value, TrainwellError)
    assert (
        f"run_dir '{tmp_path / 'run'}' is in use by process {os.getpid()} on host '{socket.gethostname()}'" in message
    )
    assert "run_dir_wait_s" in message
    assert not first.held and (tmp_path / "run" / ".lock").read_text() == ""  # released, holder cleared
    with RunDirLock(tmp_path / "run"):
        pass


def test_waiting_takes_the_lock_once_the_holder_lets_go(tmp_path):
    first = RunDirLock(tmp_path)
    first.acquire()
    threading.Timer(0.3, first.release).start()
    started = time.monotonic()
    with RunDirLock(tmp_path, wait_s=None, poll_s=0.05) as second:
        assert second.held and time.monotonic() - started >= 0.25


def test_waiting_gives_up_after_run_dir_wait_s(tmp_path):
    with RunDirLock(tmp_path):
        started = time.monotonic()
        with pytest.raises(RunDirLockedError, match=r"; waited 0\.2 s\. Two processes"):
            RunDirLock(tmp_path, wait_s=0.2, poll_s=0.05).acquire()
        assert 0.2 <= time.monotonic() - started < 2


@pytest.mark.multiprocess
def test_another_process_is_named_and_a_killed_holder_blocks_nothing(tmp_path):
    process = _holder(tmp_path)
    try:
        with pytest.raises(RunDirLockedError, match=f"in use by process {process.pid} on host"):
            RunDirLock(tmp_path).acquire()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # The kernel released the dead holder's lock; its record in the file is stale and means nothing.
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == process.pid
    with RunDirLock(tmp_path) as lock:
        assert lock.held
