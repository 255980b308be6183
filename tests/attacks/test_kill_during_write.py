"""SIGKILL in the middle of a checkpoint write: the committed checkpoints survive, and the dead run's lock blocks nothing.

The full campaign (24 kills at random moments and at every kind of file operation) is
``tests/files/test_checkpoint.py::test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint_and_resume_completes``;
here three kills inside writes are each followed at once by a resume in a new process, which
must find the run directory free although its holder died without releasing it.
"""

import json
import signal

import pytest
import torch

import trainwell


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_run_killed_inside_a_checkpoint_write_resumes_at_once_to_the_uninterrupted_weights(tmp_path, zygote):
    def spec(name, **extra):
        return {
            "run_dir": str(tmp_path / name),
            "losses": str(tmp_path / f"{name}.txt"),
            "final": str(tmp_path / f"{name}.pt"),
            "epochs": 2,
            "every_steps": 1,
            **extra,
        }

    assert zygote.run(spec("reference")) == 0
    reference = torch.load(tmp_path / "reference.pt")
    for how in (["write", 310], ["replace-before", 9], ["fsync", 12]):
        name = "killed-" + how[0]
        pid = zygote.start(spec(name, kill_in_save=how))
        assert zygote.wait(pid) == -signal.SIGKILL, how
        # The dead process still appears as the holder in the lock file; the kernel released its lock.
        assert json.loads((tmp_path / name / ".lock").read_text())["pid"] == pid
        assert trainwell.load_checkpoint(tmp_path / name) is not None  # the last committed checkpoint verifies
        assert zygote.run(spec(name, resume="auto")) == 0, how
        resumed = torch.load(tmp_path / f"{name}.pt")
        assert all(torch.equal(resumed[key], reference[key]) for key in reference), how
