"""What rank 0 decides for every process: the checkpoint to resume from, read by the others without hashing it again."""

import pytest
import torch

from trainwell.distributed.primary import start_in
from trainwell.files import checkpoint as checkpoint_files
from trainwell.files import sharded
from trainwell.files.checkpoint import write_checkpoint


class Follower:
    """A session seen from rank 1: rank 0's outcome arrives by broadcast."""

    is_primary = False

    def __init__(self, path):
        self.outcome = (None, str(path))
        self.checked = None

    def broadcast(self, value):
        return self.outcome

    def check_resumable(self, path, checkpoint):
        self.checked = (path, checkpoint["step"])


def _sharded(directory, step):
    path = directory / f"step-{step:09d}.dcp"
    temporary = sharded.temporary_directory(path, 1)
    temporary.mkdir(parents=True)
    (temporary / "__1_0.distcp").write_bytes(b"the pieces of rank 1")
    files = {"__1_0.distcp": sharded.digest(temporary / "__1_0.distcp")}
    files[sharded.REST] = sharded.write_rest(temporary, {"step": step, "sharded": True})
    return sharded.commit(temporary, path, files, step=step, epoch=0, val_loss=None, kind="step", healthy=True)


@pytest.mark.parametrize("kind", ["file", "sharded"])
def test_the_other_ranks_read_the_checkpoint_rank_0_verified_without_hashing_it_again(tmp_path, monkeypatch, kind):
    if kind == "file":
        path = write_checkpoint(tmp_path / "step-000000004.pt", {"step": 4, "w": torch.ones(2)}, step=4)
    else:
        path = _sharded(tmp_path, 4)
    hashed, verify, digest = [], checkpoint_files.verify, sharded.digest
    monkeypatch.setattr(checkpoint_files, "verify", lambda path: hashed.append(path) or verify(path))
    monkeypatch.setattr(sharded, "digest", lambda path: hashed.append(path) or digest(path))
    session = Follower(path)
    found, checkpoint = start_in(session, str(path), None)
    assert found == path and checkpoint["step"] == 4 and session.checked == (path, 4)
    assert hashed == []


def test_rank_0s_failure_to_pick_a_checkpoint_ends_the_other_ranks_too(tmp_path):
    from trainwell.exceptions import CheckpointError

    session = Follower(tmp_path)
    session.outcome = (CheckpointError("checkpoint 'x' is corrupt"), None)
    with pytest.raises(CheckpointError, match="is corrupt"):
        start_in(session, "auto", tmp_path)
    assert session.checked is None
