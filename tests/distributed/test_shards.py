"""Sharded checkpoints through torch.distributed.checkpoint, in one process (a process group of one, gloo)."""

import errno
import json
import pickle

import pytest
import torch
from torch import nn

from trainwell.distributed import shards
from trainwell.distributed.session import Session
from trainwell.exceptions import CheckpointError
from trainwell.files import sharded
from trainwell.files.checkpoint import load_checkpoint, read_checkpoint, verify
from trainwell.files.manifest import committed_checkpoints, manifest_path, manifest_text
from trainwell.files.retry import RetryPolicy


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A session of one process that shards with FSDP2 (the pieces of a process group of one are whole)."""
    store = tmp_path_factory.mktemp("store") / "store"
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    place = Session(0, 0, 1, torch.device("cpu"), "gloo", created_group=False)
    place.use_strategy("fsdp")
    try:
        yield place
    finally:
        torch.distributed.destroy_process_group()


def _network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _checkpoint(module):
    weights = module.state_dict()
    return {"step": 7, "epoch": 1, "model_state_dict": weights, "trainer": {"model": weights, "rng": torch.arange(3)}}


def test_a_sharded_model_is_written_by_its_pieces_and_read_back_in_pieces_or_whole(session, tmp_path):
    plain = _network()
    module = session.place(_network())
    path = shards.write(
        session, tmp_path / "step-000000007.dcp", _checkpoint(module), step=7, epoch=1, monitor="val_f1", monitored=0.5
    )
    assert verify(path).step == 7
    assert verify(path).value("val_f1") == 0.5  # the best checkpoint is ranked by the run's monitor
    assert sorted(p.name for p in path.iterdir()) == [".metadata", "__0_0.distcp", "files.json", "trainer.pt"]
    assert read_checkpoint(path)["sharded"] is True

    pieces = shards.read(path, session)
    assert shards.is_sharded(pieces["trainer"]["model"]["0.weight"])
    assert pieces["trainer"]["model"]["0.weight"] is pieces["model_state_dict"]["0.weight"]
    assert torch.equal(pieces["trainer"]["rng"], torch.arange(3))  # the rest, from trainer.pt
    whole = shards.read(path, None)  # one process, no sharding: whole tensors on the CPU
    for key, value in plain.state_dict().items():
        assert not shards.is_sharded(whole["model_state_dict"][key])
        assert torch.equal(whole["model_state_dict"][key], value), key

    single = shards.consolidate(path, tmp_path / "whole.pt")
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert load_checkpoint(single, fresh)["step"] == 7
    for key, value in plain.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_a_full_disk_while_rank_0_commits_is_retried_then_named_with_the_fix(session, tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError: rank 0's commit classifies it as a single file's write does."""
    module = session.place(_network())
    earlier = shards.write(session, tmp_path / "step-000000005.dcp", _checkpoint(module), step=5)
    original = sharded.write_atomically

    def full(path, write):
        if path.name == sharded.REST:
            error = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 0")
            error.__context__ = OSError(errno.ENOSPC, "No space left on device")
            raise error
        return original(path, write)

    monkeypatch.setattr(sharded, "write_atomically", full)
    waits = []
    with pytest.raises(CheckpointError, match=r"after 2 attempts: \[Errno 28\] .*the disk is full.*Free disk space"):
        shards.write(
            session,
            tmp_path / "step-000000007.dcp",
            _checkpoint(module),
            step=7,
            retry=RetryPolicy(2),
            sleep=waits.append,
        )
    assert len(waits) == 1
    assert [m.path for m in committed_checkpoints(tmp_path)] == [earlier]


def test_a_crafted_metadata_file_never_runs_code(session, tmp_path):
    """Every file of the checkpoint is the attacker's, manifest included: DCP's .metadata is a pickle, and
    unpickling it would run the command; the restricted pass refuses it first."""
    module = session.place(_network())
    path = shards.write(session, tmp_path / "step-000000007.dcp", _checkpoint(module), step=7, epoch=1)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    (path / ".metadata").write_bytes(pickle.dumps(Payload()))
    listed = json.loads((path / sharded.INDEX).read_text())
    listed["files"][".metadata"] = dict(zip(("sha256", "bytes"), sharded.digest(path / ".metadata")))
    (path / sharded.INDEX).write_text(json.dumps(listed))
    index = sharded.digest(path / sharded.INDEX)
    manifest = manifest_text(path, *index, step=7, epoch=1, val_loss=None, kind="step", healthy=True)
    manifest_path(path).write_bytes(manifest)
    assert verify(path) is not None  # it verifies: the files are as their (forged) manifest says
    with pytest.raises(CheckpointError, match="builtins.exec is not allowed in a checkpoint's .metadata"):
        shards.read(path, None)
    with pytest.raises(CheckpointError, match="is not allowed"):
        shards.read(path, session)
    assert not marker.exists()


def test_consolidating_a_single_file_checkpoint_or_a_run_directory_is_refused(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a sharded checkpoint"):
        shards.consolidate(tmp_path / "a.pt", tmp_path / "b.pt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="'.+run' is not a sharded checkpoint"):
        shards.consolidate(tmp_path / "run", tmp_path / "b.pt")
