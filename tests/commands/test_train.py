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
    assert {"config.yaml", "metrics.jsonl", "train.log", "curves.png", "report.html"} <= {p.name for p in run_dir.iterdir()}
    # The doctor finds nothing to warn about in the default run.
    assert "Doctor: no problems found." in (run_dir / "train.log").read_text() and "Doctor:" not in done.stderr.replace("Doctor: no problems found.", "")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = [record for record in records if record["event"] == "epoch"]
    assert max(row["val_accuracy"] for row in history) >= 0.97
    assert "val_accuracy" in done.stdout and f"Run directory: {run_dir.relative_to(tmp_path)}" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs=0 is out of range: expected an integer from 1 to 1000."),
        (["--epochs", "ten"], "--epochs='ten' has the wrong type: expected an integer from 1 to 1000."),
        (["--lr", "5"], "--lr=5 is out of range: expected a number from 1e-06 to 1."),
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
    config.write_text("data: iris\nepochs: 7\nlr: 0.02\nmodel_args: {hidden: [16], dropout: 0.1}\n")
    flags = ["--epochs", "3", "--model-arg", "dropout=0.4", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(["train", "--config", str(config), *flags]) == 0
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (resolved["data"], resolved["epochs"], resolved["lr"]) == ("iris", 3, 0.02)
    assert (resolved["model_args"]["hidden"], resolved["model_args"]["dropout"]) == ([16], 0.4)
    assert "final (epoch 3)" in capsys.readouterr().out


def test_resolved_config_reruns_as_is(tmp_path):
    assert main(["train", "--data", "iris", "--epochs", "2", "--out", str(tmp_path / "first"), "--quiet"]) == 0
    rerun = ["train", "--config", str(tmp_path / "first" / "config.yaml"), "--out", str(tmp_path / "second"), "--quiet"]
    assert main(rerun) == 0
    first, second = (yaml.safe_load((tmp_path / name / "config.yaml").read_text()) for name in ("first", "second"))
    assert {**first, "run_dir": None} == {**second, "run_dir": None}


@pytest.mark.parametrize(
    ("content", "message"),
    [("epochs: [", "is not valid YAML"), ("- 1\n- 2\n", "holds a list: expected a mapping"), ("epoch: 3\n", "'epoch' is not an option. Did you mean 'epochs'?")],
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


@pytest.mark.slow
def test_train_on_mnist_files_from_a_directory(make_mnist_dir, tmp_path, capsys):
    data_dir = make_mnist_dir(train=600, test=100)
    run_dir = tmp_path / "run"
    status = main(["train", "--data", "mnist", "--data-dir", str(data_dir), "--no-download", "--epochs", "3", "--out", str(run_dir), "--quiet"])
    assert status == 0, capsys.readouterr().err
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(row["val_accuracy"] for row in history if "val_accuracy" in row) >= 0.9
    assert json.loads((run_dir / "data.json").read_text())["class_names"] == [str(d) for d in range(10)]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"] == "mnist" and config["data_dir"] == str(data_dir) and config["download"] is False
    assert "MLP: input (64, 1, 28, 28) -> output (64, 10)" in (run_dir / "model.txt").read_text()


def test_train_on_a_csv_with_target(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("x,colour,y\n" + "".join(f"{i % 10},{['red', 'blue'][i % 2]},{i % 2}\n" for i in range(80)))
    run_dir = tmp_path / "run"
    status = main(["train", "--data", str(table), "--target", "y", "--epochs", "2", "--out", str(run_dir), "--quiet"])
    assert status == 0, capsys.readouterr().err
    assert json.loads((run_dir / "data.json").read_text())["preprocessing"]["feature_names"] == ["x", "colour=blue", "colour=red"]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--data", "cifar"], 2, "data='cifar' is not a known dataset"),
        (["--data", "missing.csv", "--target", "y"], 2, "data 'missing.csv' does not exist"),
        (["--data", "TABLE"], 2, "needs a target column: pass target=... (--target on the command line)"),
        (["--data", "TABLE", "--target", "z"], 2, "target='z' is not a column of"),
        (["--data", "mnist", "--data-dir", "EMPTY", "--no-download"], 1, "lacks 'train-images-idx3-ubyte.gz'"),
        (["--data", "TABLE", "--target", "y", "--missing", "guess"], 2, "--missing='guess' is not a valid choice"),
    ],
)
def test_bad_data_fails_before_training_with_the_file_named(tmp_path, capsys, args, status, message):
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    args = [str(table) if a == "TABLE" else str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == status
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_extra_loggers_from_the_command_line(tmp_path):
    assert main(["train", "--data", "iris", "--epochs", "2", "--log", "csv", "tensorboard", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "metrics.csv").is_file() and list((tmp_path / "run" / "tensorboard").iterdir())
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["loggers"] == ["csv", "tensorboard"]


def test_an_unknown_logger_is_refused(tmp_path, capsys):
    assert main(["train", "--log", "wandb", "--out", str(tmp_path / "run")]) == 2
    assert "--loggers='wandb' is not a valid choice" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text("loggers: [wandb]\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "loggers[0]='wandb' is not a valid choice: expected a list, each item one of 'csv', 'tensorboard', 'mlflow'." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("channels=32,64", ("channels", [32, 64])),
        ("channels=32", ("channels", 32)),
        ("dropout=0.25", ("dropout", 0.25)),
        ("bidirectional=true", ("bidirectional", True)),
        ("batch_norm=False", ("batch_norm", False)),
        ("dim_feedforward=none", ("dim_feedforward", None)),
        ("pooling=mean", ("pooling", "mean")),
        ("hidden=64,", ("hidden", [64])),
        ("lr=1e-3", ("lr", 0.001)),
    ],
)
def test_model_arg_values_are_parsed(text, parsed):
    from trainwell.commands.flags import parse_key_value

    assert parse_key_value(text) == parsed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-arg", "channels"], "argument --model-args/--model-arg: 'channels' is not KEY=VALUE: write e.g. channels=32,64"),
        (["--model", "resnet"], "--model='resnet' is not a valid choice: expected one of 'mlp', 'cnn', 'lstm', 'gru', 'rnn', 'transformer'."),
        (["--model", "cnn", "--model-arg", "chanels=8"], "'chanels' is not an argument of model 'cnn'. Did you mean 'channels'?"),
        (["--model", "cnn", "--model-arg", "dropout=2"], "model argument dropout=2 is invalid for model 'cnn': expected a number from 0 to below 1."),
        (["--model", "cnn", "--data", "iris"], "model='cnn' takes images data, but data='iris' is tabular"),
        (["--model", "cnn", "--model-arg", "num_classes=3"], "model argument num_classes=3 is decided by the data (num_classes=10)"),
    ],
)
def test_bad_models_and_model_args_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert_exit = pytest.raises(SystemExit)
    with assert_exit as exited:
        raise SystemExit(main(["train", "--out", str(tmp_path / "run"), *args]))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_model_flags_build_the_model_and_the_summary_is_logged_first(tmp_path, caplog):
    run_dir = tmp_path / "run"
    flags = ["--model", "cnn", "--model-arg", "channels=8,16", "--model-arg", "dropout=0", "--epochs", "1"]
    with caplog.at_level("INFO", logger="trainwell"):
        assert main(["train", *flags, "--out", str(run_dir)]) == 0
    summary = (run_dir / "model.txt").read_text().strip()
    assert summary.startswith("CNN: input (64, 1, 8, 8) -> output (64, 10)")
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Model:")]
    assert starts and summary in starts[0]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (resolved["model"], resolved["model_args"]["channels"], resolved["model_args"]["dropout"]) == ("cnn", [8, 16], 0.0)


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


@pytest.mark.slow
def test_what_a_terminal_shows_of_a_run(tmp_path):
    """A real `trainwell train` in a pseudo-terminal: every epoch line on its own line, each bar at 100%, no bar left."""
    pytest.importorskip("pyte")
    import os

    from ..terminal import run_in_terminal, screen_lines

    command = [sys.executable, "-m", "trainwell", "train", "--epochs", "2", "--out", str(tmp_path / "run")]
    output, status = run_in_terminal(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = screen_lines(output)
    assert status == 0, "\n".join(lines)
    text = output.decode(errors="replace")
    for epoch in (1, 2):
        # The bar reached the end of each epoch, with the running loss and the lr ...
        assert f"epoch {epoch}/2: 100%" in text and "23/23" in text and ", lr " in text
        # ... and the epoch line starts a line of its own: never glued onto a bar.
        assert sum(line.startswith(f"epoch {epoch}/2  train_loss ") for line in lines) == 1, "\n".join(lines)
    assert not [line for line in lines if "batch/s" in line], "a bar was left on the screen"
    # The data summary reaches the console before training starts, and train.log too.
    assert any(line.startswith("Loaded digits (scikit-learn, bundled): 1,797 samples") for line in lines)
    assert "Loaded digits" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.slow
def test_quiet_silences_the_console_but_not_train_log(tmp_path):
    table = tmp_path / "houses.csv"
    table.write_text("area,rooms,price\n" + "".join(f"{'' if i % 9 == 0 else 30 + i},{i % 5},{i % 2}\n" for i in range(60)))
    done = _trainwell("train", "--data", str(table), "--target", "price", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    for message in ("missing='impute': 7 in 'area'", "Target 'price' of", "Loaded '", "Parameters:", "epoch 1/1"):
        assert message in log and message not in done.stderr
    assert "final (epoch 1)" in done.stdout


def test_data_messages_reach_train_log(tmp_path, capsys):
    assert main(["train", "--data", "iris", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    log = (tmp_path / "run" / "train.log").read_text()
    # Logged while the data was loaded, before the run directory existed: kept and written first.
    assert log.index("Loaded iris (scikit-learn, bundled)") < log.index("Training MLP")
    assert "Doctor:" in log


@pytest.mark.parametrize(
    "args",
    [
        ["--precision", "fp16", "--device", "cpu"],
        ["--data", "iris", "--model", "cnn"],
        ["--data", "TABLE"],
        ["--data", "iris", "--model-arg", "input_size=3"],
        ["--epochs", "0"],
        ["--data", "nothing.csv"],
        ["--data", "iris", "--lr", "auto", "--precision", "fp16", "--device", "cpu"],  # refused on every machine
    ],
)
def test_no_run_directory_after_a_refusal_before_training(tmp_path, capsys, args):
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    args = [str(table) if a == "TABLE" else a for a in args]
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2, capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # The same command with the refusal fixed then runs in that directory (nothing was left there).


def test_a_fixed_command_reuses_the_refused_directory(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--data", "iris", "--epochs", "1", "--precision", "fp16", "--device", "cpu", "--out", out]) == 2
    assert "fp16" in capsys.readouterr().err
    assert main(["train", "--data", "iris", "--epochs", "1", "--precision", "fp32", "--device", "cpu", "--out", out, "--quiet"]) == 0


@pytest.mark.slow
def test_lr_auto_saves_the_finder_plot(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="trainwell")
    assert main(["train", "--data", "iris", "--epochs", "1", "--lr", "auto", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert "lr=auto: using the LR finder's suggestion" in (tmp_path / "run" / "train.log").read_text()
