"""The runnable examples, end to end on data the tests write themselves."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_mnist_mlp_example_trains_on_mnist_files(make_mnist_dir, tmp_path):
    data_dir = make_mnist_dir(train=600, test=100)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_mlp.py"), "--data-dir", str(data_dir), "--no-download", "--epochs", "3", "--out", str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    val, test = (float(part.split()[-1]) for part in done.stdout.strip().splitlines()[-1].split(";"))
    assert val >= 0.9 and test >= 0.9
    data_info = json.loads((run_dir / "data.json").read_text())
    assert data_info["name"] == "mnist" and data_info["input_shape"] == [1, 28, 28]
    assert "-> output (128, 10)" in (run_dir / "model.txt").read_text()
