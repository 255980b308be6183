import pytest
import torch
from torch import nn

from trainwell import CheckpointError, CheckpointMismatchError
from trainwell.export import load_safetensors, save_safetensors

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
