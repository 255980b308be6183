import json
import subprocess
import sys

import pytest
import yaml

from trainwell.cli import main


def _trainwell(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trainwell", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_train_with_no_arguments_reaches_097_on_digits(tmp_path):
    done = _trainwell("train", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert {"config.yaml", "metrics.jsonl", "train.log"} <= {p.name for p in run_dir.iterdir()}
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(row["val_accuracy"] for row in history) >= 0.97
    assert "val_accuracy" in done.stdout and f"Run directory: {run_dir.relative_to(tmp_path)}" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs=0 is out of range: expected an integer from 1 to 1000."),
        (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
        (["--lr", "5"], "--lr=5.0 is out of range"),
        (["--precision", "fp8"], "--precision='fp8' is not a valid choice"),
        (["--batch-size", "0"], "--batch-size=0 is out of range"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flag_values_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(["train", "--out", str(tmp_path / "run"), *args]))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_flag_in_a_real_process_has_no_traceback(tmp_path):
    done = _trainwell("train", "--epochs", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "trainwell train: error: --epochs=0 is out of range: expected an integer from 1 to 1000."


def test_config_file_is_read_and_flags_override_it(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("data: iris\nepochs: 7\nlr: 0.02\nhidden: [16]\n")
    assert main(["train", "--config", str(config), "--epochs", "3", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (resolved["data"], resolved["epochs"], resolved["lr"], resolved["hidden"]) == ("iris", 3, 0.02, [16])
    assert "final (epoch 3)" in capsys.readouterr().out


def test_resolved_config_reruns_as_is(tmp_path):
    assert main(["train", "--data", "iris", "--epochs", "2", "--out", str(tmp_path / "first"), "--quiet"]) == 0
    rerun = ["train", "--config", str(tmp_path / "first" / "config.yaml"), "--out", str(tmp_path / "second"), "--quiet"]
    assert main(rerun) == 0
    first, second = (yaml.safe_load((tmp_path / name / "config.yaml").read_text()) for name in ("first", "second"))
    assert {**first, "run_dir": None} == {**second, "run_dir": None}


@pytest.mark.parametrize(
    ("content", "message"),
    [("epochs: [", "is not valid YAML"), ("- 1\n- 2\n", "holds a list: expected a mapping"), ("epoch: 3\n", "'epoch' is not a known option. Did you mean 'epochs'")],
)
def test_bad_config_files(tmp_path, capsys, content, message):
    config = tmp_path / "run.yaml"
    config.write_text(content)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_existing_run_dir_fails_cleanly(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert main(["train", "--data", "iris", "--out", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--epochs", "--lr", "--batch-size", "--precision", "--seed", "--out", "--config", "--quiet", "--data", "--device",
                 "--resume", "--checkpoint-every"):
        assert flag in out


def test_resume_auto_needs_out(capsys):
    assert main(["train", "--resume", "auto"]) == 2
    assert "--resume auto needs --out RUN_DIR" in capsys.readouterr().err


def test_resume_path_must_exist(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "--resume '" in capsys.readouterr().err


def test_resume_takes_the_options_of_the_run_it_continues(tmp_path):
    first = tmp_path / "first"
    assert main(["train", "--data", "iris", "--epochs", "2", "--lr", "0.02", "--out", str(first), "--quiet"]) == 0
    # Continue the same run for more epochs: its options (iris, lr 0.02) come from its config.yaml.
    assert main(["train", "--resume", "auto", "--out", str(first), "--epochs", "3", "--quiet"]) == 0
    resolved = yaml.safe_load((first / "config.yaml").read_text())
    assert (resolved["data"], resolved["lr"], resolved["epochs"]) == ("iris", 0.02, 3)
    rows = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2, 3]
    # A checkpoint of that run continued into a new directory.
    checkpoint = sorted((first / "checkpoints").glob("epoch-0002-*.pt"))[0]
    assert main(["train", "--resume", str(checkpoint), "--out", str(tmp_path / "second"), "--quiet"]) == 0
    second = yaml.safe_load((tmp_path / "second" / "config.yaml").read_text())
    assert (second["data"], second["lr"], second["epochs"]) == ("iris", 0.02, 3)
