import stat
import warnings

import pytest
import torch
from torch import nn

from trainwell import CheckpointError, CheckpointMismatchError
from trainwell.use.export import load_safetensors, save_safetensors

pytest.importorskip("safetensors")


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight


def test_weights_round_trip_through_safetensors(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    model(torch.randn(8, 3))  # running statistics become non-trivial
    path = save_safetensors(tmp_path / "model.safetensors", model, metadata={"epoch": "3"})
    assert path.read_bytes()[8:9] == b"{"  # a JSON header, no pickle
    # Read like every other file trainwell writes (safetensors itself creates it 0600).
    (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    load_safetensors(path, fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_tied_weights_are_stored_once_and_restored(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    path = save_safetensors(tmp_path / "tied.safetensors", model)
    fresh = Tied()
    load_safetensors(path, fresh)
    assert torch.equal(fresh.out.weight, model.embed.weight) and fresh.out.weight is fresh.embed.weight


def test_a_different_architecture_is_refused_before_anything_is_loaded(tmp_path):
    path = save_safetensors(tmp_path / "m.safetensors", nn.Linear(3, 5))
    other = nn.Linear(3, 6)
    before = other.weight.clone()
    with pytest.raises(
        CheckpointMismatchError, match=r"different shape: weight \(checkpoint \(5, 3\), model \(6, 3\)\)"
    ):
        load_safetensors(path, other)
    assert torch.equal(other.weight, before)
    shallow = save_safetensors(tmp_path / "shallow.safetensors", nn.Sequential(nn.Linear(3, 5)))
    with pytest.raises(CheckpointMismatchError, match=r"missing from the checkpoint: 1\.weight, 1\.bias\. It holds"):
        load_safetensors(shallow, nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)))


def test_a_damaged_file_is_reported_by_name(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=r"'.*bad\.safetensors' is not a readable safetensors file"):
        load_safetensors(path, nn.Linear(3, 5))


# ------------------------------------------------------------------------------- graphs and runs


class BranchOnSign(nn.Module):
    """A data-dependent branch through NumPy: scripting refuses NumPy, tracing bakes in one side of the branch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, inputs):
        import numpy

        if numpy.sign(float(inputs.sum())) > 0:
            return self.linear(inputs) * 2
        return self.linear(inputs) * 3


def test_torchscript_round_trips_within_tolerance(tmp_path):
    from trainwell.data.bundled import DataInfo
    from trainwell.models import build
    from trainwell.use.export import export_torchscript, sample_inputs

    torch.manual_seed(0)
    model = build("cnn", in_channels=1, num_classes=10, channels=[8, 16]).eval()
    samples = sample_inputs(DataInfo("d", "classification", (1, 8, 8), 10))
    check = export_torchscript(tmp_path / "cnn.pt", model, samples)
    assert check.method == "trace" and check.samples == 7
    with warnings.catch_warnings():  # torch.jit is deprecated in recent PyTorch; its files still load
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(tmp_path / "cnn.pt"))
    fresh = torch.randn(6, 1, 8, 8)
    assert torch.allclose(loaded(fresh), model(fresh), atol=1e-5)


def test_a_model_that_cannot_become_a_faithful_graph_is_refused_and_leaves_no_file(tmp_path):
    from trainwell.exceptions import ExportError
    from trainwell.use.export import export_torchscript

    samples = [torch.ones(4, 3), -torch.ones(3, 3)]
    with pytest.raises(ExportError, match=r"BranchOnSign cannot be exported as TorchScript: script: .*; trace: the exported model's outputs differ .* Export it as ONNX"):
        export_torchscript(tmp_path / "branch.pt", BranchOnSign(), samples)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_round_trips_within_tolerance_and_refuses_what_torch_export_cannot_capture(tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs trainwell[onnx] (onnx, onnxscript, onnxruntime)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="checking an ONNX export needs onnxruntime (trainwell[onnx])")
    from trainwell.data.bundled import DataInfo
    from trainwell.exceptions import ExportError
    from trainwell.models import build
    from trainwell.use.export import export_onnx, sample_inputs

    torch.manual_seed(0)
    model = build("mlp", input_size=64, output_size=10, hidden=[32]).eval()
    check = export_onnx(tmp_path / "mlp.onnx", model, sample_inputs(DataInfo("d", "classification", (64,), 10)))
    assert check.max_abs_diff < 1e-4 and check.method == "torch.export"
    session = onnxruntime.InferenceSession(str(tmp_path / "mlp.onnx"), providers=["CPUExecutionProvider"])
    fresh = torch.randn(9, 64)
    outputs = session.run(["outputs"], {"inputs": fresh.numpy()})[0]
    assert torch.allclose(torch.from_numpy(outputs), model(fresh), atol=1e-4)
    with pytest.raises(ExportError, match=r"BranchOnSign cannot be exported to ONNX: torch.export could not capture it \(.+\)\. Export it as TorchScript"):
        export_onnx(tmp_path / "branch.onnx", BranchOnSign(), [torch.ones(4, 3), -torch.ones(3, 3)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    from trainwell.exceptions import DependencyError
    from trainwell.use.export import export_onnx

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(DependencyError, match=r"ONNX export needs onnxruntime, which is not installed: pip install 'trainwell\[onnx\]'"):
        export_onnx(tmp_path / "m.onnx", nn.Linear(2, 2), [torch.randn(2, 2)])


def test_export_run_writes_each_format_checked_into_the_run_dir(trained_run):
    from trainwell.exceptions import ConfigError
    from trainwell.use.export import export_run

    result = trained_run("digits", data="digits", epochs=2)
    check = export_run(result.run_dir, "safetensors")
    assert check.path == result.run_dir / "model.safetensors" and check.max_abs_diff == 0.0
    from safetensors import safe_open

    with safe_open(str(check.path), framework="pt") as file:
        metadata = file.metadata()
    assert metadata["model"] == "mlp" and metadata["checkpoint"] == result.best_checkpoint.name
    scripted = export_run(result.run_dir, "torchscript")
    assert scripted.path.name == "model.torchscript.pt" and scripted.max_abs_diff <= 1e-4
    with pytest.raises(ConfigError, match=r"format='tflite' is not a valid choice"):
        export_run(result.run_dir, "tflite")


def test_a_regression_graph_returns_values_in_the_targets_units(trained_run):
    import json

    from safetensors import safe_open

    from trainwell import load_model
    from trainwell.use.export import export_run

    result = trained_run("diabetes", data="diabetes", epochs=2)
    scripted = torch.jit.load(str(export_run(result.run_dir, "torchscript").path))
    loaded = load_model(result.run_dir)
    rows = loaded.prepare(torch.randn(5, 10))
    expected = loaded.predict(rows).values  # disease progression, not standardised values
    assert 20 < float(expected.mean()) < 350
    assert torch.allclose(scripted(rows).reshape(expected.shape), expected, rtol=1e-5, atol=1e-4)
    with safe_open(str(export_run(result.run_dir, "safetensors").path), framework="pt") as file:
        assert json.loads(file.metadata()["target_scaling"]) == loaded.info.target_scaling
