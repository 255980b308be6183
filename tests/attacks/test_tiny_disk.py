"""A real full disk: ``torch.save``'s zip writer reports it as a RuntimeError, which the retry must still see."""

import json
import subprocess

import pytest

import trainwell

from .conftest import last_line, tmpfs


@pytest.mark.slow
def test_a_full_disk_ends_training_with_one_line_naming_the_free_space_and_the_fix_and_resume_completes(
    tmp_path, trainwell_command
):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 4\nretry_base_delay_s: 0.0\n")  # the retries, without their waits
    with tmpfs(tmp_path / "disk", "2m") as disk:
        run_dir = disk / "run"
        status, stderr = trainwell_command("train", "--config", config, "--out", run_dir, "--quiet")
        line = last_line(stderr)
        assert status == 1 and "Traceback" not in stderr
        # Two epochs' checkpoints (0.86 MB each) fit in 2 MB, the third does not.
        assert line.startswith(f"trainwell train: failed: could not write checkpoint '{run_dir}/checkpoints/epoch-0003")
        assert "after 3 attempts: [Errno 28] No space left on device: the disk is full (" in line
        assert f"free on the file system of '{run_dir}/checkpoints'; the checkpoint needs" in line
        assert "Free disk space there" in line and "earlier checkpoints are intact" in line
        assert trainwell.load_checkpoint(run_dir)["step"] == 46  # the last committed checkpoint still loads
        # Free space (here: grow the disk), then resume: the run completes where it stopped.
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        status, stderr = trainwell_command("train", "--resume", "auto", "--out", run_dir, "--quiet")
        assert status == 0, stderr
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2, 3, 4]
