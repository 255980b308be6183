"""A run directory on a read-only file system (read-only for root too): every command says so in one line."""

import pytest

from .conftest import digits_inputs, last_line, read_only

COMMANDS = {
    "train --resume auto": lambda run: ["train", "--resume", "auto", "--out", run, "--epochs", "3", "--quiet"],
    "train into a new directory": lambda run: ["train", "--out", run / "new", "--epochs", "1", "--quiet"],
    "eval": lambda run: ["eval", run],
    "export": lambda run: ["export", run, "--format", "safetensors"],
    "predict --output": lambda run: [
        "predict",
        run,
        "--input",
        run / "inputs.csv",
        "--output",
        run / "predictions.csv",
    ],
    "report": lambda run: ["report", run],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_read_only_run_directory_fails_with_one_line_naming_the_file_and_the_fix(
    finished_run, tmp_path, trainwell_command, command
):
    digits_inputs(finished_run / "inputs.csv")
    with read_only(finished_run, tmp_path / "read-only") as run:
        status, stderr = trainwell_command(*command(run))
    line = last_line(stderr)
    assert status == 1 and "Traceback" not in stderr, stderr
    assert f"'{run}" in line and "[Errno 30] Read-only file system" in line
    assert "is on a read-only file system: write somewhere else, or remount it read-write." in line


def test_predicting_to_standard_output_from_a_read_only_run_directory_works(finished_run, tmp_path, trainwell_command):
    digits_inputs(finished_run / "inputs.csv")
    with read_only(finished_run, tmp_path / "read-only") as run:
        status, stderr = trainwell_command("predict", run, "--input", run / "inputs.csv")
    assert status == 0, stderr
