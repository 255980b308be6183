import pytest

from trainwell.cli import main


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize(("value", "message"), [("0", "0 is out of range: expected an integer ≥ 1"), ("many", "'many' is not an integer")])
def test_batch_size_of_inference_commands_is_refused_before_any_work(tmp_path, capsys, command, value, message):
    # The run directory does not exist: the flag is refused first, at parse time.
    args = [command, str(tmp_path / "no-run"), "--batch-size", value]
    if command == "predict":
        args += ["--input", str(tmp_path / "new.csv")]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --batch-size: {message}" in err


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_inference_commands_share_the_checkpoint_option(command):
    from trainwell.cli import build_parser

    args = build_parser().parse_args([command, "runs/x", "--checkpoint", "last", *_required(command)])
    assert args.checkpoint == "last"


def _required(command):
    return {"predict": ["--input", "new.csv"], "export": ["--format", "onnx"]}.get(command, [])
