import pytest

from trainwell.cli import main


def test_export_formats_from_the_command_line(trained_run, tmp_path, capsys):
    result = trained_run("digits", data="digits", epochs=2)
    output = tmp_path / "digits.pt"
    assert main(["export", str(result.run_dir), "--format", "torchscript", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert f"Exported torchscript (script) to {output}: checked on 7 sample inputs" in out and output.is_file()
    pytest.importorskip("onnxruntime", reason="ONNX export needs trainwell[onnx]")
    pytest.importorskip("onnxscript", reason="ONNX export needs trainwell[onnx]")
    assert main(["export", str(result.run_dir), "--format", "onnx"]) == 0
    assert f"Exported onnx (torch.export) to {result.run_dir / 'model.onnx'}" in capsys.readouterr().out


def test_export_refuses_bad_flags(trained_run, capsys):
    result = trained_run("digits", data="digits", epochs=2)
    with pytest.raises(SystemExit) as exited:
        main(["export", str(result.run_dir), "--format", "tflite"])
    assert exited.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", str(result.run_dir), "--format", "onnx", "--atol", "-1"]) == 2
    assert "--atol=-1.0 is out of range" in capsys.readouterr().err
