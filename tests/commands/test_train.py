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
    for flag in ("--epochs", "--lr", "--batch-size", "--precision", "--seed", "--out", "--config", "--quiet", "--data", "--device"):
        assert flag in out


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
    from trainwell.commands.train import parse_model_arg

    assert parse_model_arg(text) == parsed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-arg", "channels"], "argument --model-arg: 'channels' is not KEY=VALUE: write e.g. --model-arg channels=32,64"),
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


def test_model_flags_build_the_model_and_the_summary_is_printed_first(tmp_path, capsys):
    run_dir = tmp_path / "run"
    flags = ["--model", "cnn", "--model-arg", "channels=8,16", "--model-arg", "dropout=0", "--epochs", "1"]
    assert main(["train", *flags, "--out", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CNN: input (64, 1, 8, 8) -> output (64, 10)")
    assert (run_dir / "model.txt").read_text().strip() == out[: out.index("Parameters:")] + out[out.index("Parameters:") :].splitlines()[0]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (resolved["model"], resolved["model_args"]["channels"], resolved["model_args"]["dropout"]) == ("cnn", [8, 16], 0.0)


def test_quiet_runs_do_not_print_the_summary(tmp_path, capsys):
    assert main(["train", "--data", "iris", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "Parameters:" not in capsys.readouterr().out
