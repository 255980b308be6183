"""A sharded checkpoint on disk: the placeholders, the commit by one manifest, verification, pruning."""

import errno

import pytest
import torch

from trainwell.exceptions import CheckpointError
from trainwell.files import sharded
from trainwell.files.checkpoint import latest_checkpoint, read_checkpoint, verify
from trainwell.files.manifest import committed_checkpoints, manifest_path, prune
from trainwell.files.retry import RetryPolicy


def _write(directory, name, step, pieces=b"pieces of rank 0", pid=123, **fields):
    """A sharded checkpoint as the writer leaves it: files in a temporary directory, then committed."""
    path = directory / name
    temporary = sharded.temporary_directory(path, pid)
    temporary.mkdir(parents=True)
    (temporary / "__0_0.distcp").write_bytes(pieces)
    (temporary / ".metadata").write_bytes(b"where the pieces are")
    files = {name: sharded.digest(temporary / name) for name in ("__0_0.distcp", ".metadata")}
    rest = {"step": step, "sharded": True, "w": {sharded.PLACEHOLDER: "w"}}
    retrying = {key: fields.pop(key) for key in ("retry", "sleep") if key in fields}
    files[sharded.REST] = sharded.write_rest(temporary, rest, path=path, **retrying)
    fields = {"epoch": 0, "val_loss": None, "kind": "step", "healthy": True, **fields, **retrying}
    return sharded.commit(temporary, path, files, step=step, **fields)


def test_sharded_tensors_become_placeholders_and_come_back():
    weight, other = torch.ones(2), torch.zeros(3)
    checkpoint = {"model_state_dict": {"w": weight}, "trainer": {"model": {"w": weight}, "n": [other, 3]}}
    rest, pieces = sharded.split(checkpoint, lambda value: value is weight, lambda value: {"shape": [2]})
    assert pieces == {"model_state_dict/w": weight}  # held twice, stored once
    assert rest["trainer"]["model"]["w"] == {sharded.PLACEHOLDER: "model_state_dict/w", "shape": [2]}
    assert rest["trainer"]["n"][0] is other
    assert len(list(sharded.placeholders(rest))) == 2
    back = sharded.fill(rest, {"model_state_dict/w": weight})
    assert back["trainer"]["model"]["w"] is weight and back["model_state_dict"]["w"] is weight


def test_a_committed_sharded_checkpoint_verifies_and_reads_with_its_placeholders(tmp_path):
    path = _write(tmp_path, "step-000000004.dcp", 4)
    assert [m.path for m in committed_checkpoints(tmp_path)] == [path]
    assert verify(path).step == 4
    checkpoint = read_checkpoint(path)
    assert checkpoint["step"] == 4 and checkpoint["w"] == {sharded.PLACEHOLDER: "w"}
    assert not list(tmp_path.glob(".*"))  # the temporary directory became the checkpoint


def test_a_sharded_checkpoint_is_a_dcp_directory_and_nothing_else(tmp_path):
    path = _write(tmp_path, "step-000000004.dcp", 4)
    (tmp_path / "run").mkdir()
    (tmp_path / "step-000000008.pt").write_bytes(b"")
    assert sharded.is_sharded_checkpoint(path) and sharded.is_sharded_checkpoint(str(path))
    assert not sharded.is_sharded_checkpoint(tmp_path / "run")  # a run directory
    assert not sharded.is_sharded_checkpoint(tmp_path / "step-000000008.pt")
    assert not sharded.is_sharded_checkpoint(tmp_path / "step-000000012.dcp")  # not there


def test_the_manifest_records_the_monitored_metric_so_the_best_checkpoint_is_ranked_by_it(tmp_path):
    path = _write(
        tmp_path, "epoch-0002-step-000000004.dcp", 4, kind="epoch", val_loss=0.4, monitor="val_accuracy", monitored=0.75
    )
    manifest = verify(path)
    assert (manifest.monitor, manifest.monitored) == ("val_accuracy", 0.75)
    assert manifest.value("val_accuracy") == 0.75 and manifest.value("val_loss") == 0.4


def test_a_transient_failure_of_the_commit_is_retried_and_a_lasting_one_says_the_disk_is_full(tmp_path, monkeypatch):
    """The manifest's write fails once (retried, committed), then trainer.pt's always, as torch.save reports a full
    disk: a RuntimeError around the operating system's error (a CheckpointError naming the cause and the fix)."""
    original, failures = sharded.write_atomically, [OSError(errno.EIO, "Input/output error")]

    def flaky(path, write):
        if path.name.endswith(".manifest.json") and failures:
            raise failures.pop()
        if path.name == sharded.REST and "000000008" in str(path):
            error = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 0")
            error.__context__ = OSError(errno.ENOSPC, "No space left on device")
            raise error
        return original(path, write)

    monkeypatch.setattr(sharded, "write_atomically", flaky)
    waits = []
    assert verify(_write(tmp_path, "step-000000004.dcp", 4, sleep=waits.append)).step == 4
    assert len(waits) == 1 and failures == []
    waits.clear()
    with pytest.raises(
        CheckpointError,
        match=r"write checkpoint '.+step-000000008\.dcp' after 2 attempts: \[Errno 28\] No space left on device: the "
        r"disk is full \(.+ free on the file system of '.+'; the checkpoint needs .+\)\. Free disk space",
    ):
        _write(tmp_path, "step-000000008.dcp", 8, retry=RetryPolicy(attempts=2), sleep=waits.append)
    assert len(waits) == 1
    assert [m.step for m in committed_checkpoints(tmp_path)] == [4]
    with pytest.raises(TypeError, match=r"checkpoint\['x'\] is a builtins.object"):  # a mistake, never retried
        sharded.write_rest(tmp_path, {"x": object()}, sleep=waits.append)
    assert len(waits) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "index"])
def test_a_damaged_sharded_checkpoint_is_refused_naming_the_file_and_auto_resume_takes_the_one_before(tmp_path, damage):
    _write(tmp_path, "step-000000004.dcp", 4)
    path = _write(tmp_path, "step-000000008.dcp", 8, pieces=b"pieces of step 8")
    piece = path / "__0_0.distcp"
    if damage == "flip":
        piece.write_bytes(b"Pieces of step 8")
    elif damage == "truncate":
        piece.write_bytes(b"pieces")
    elif damage == "delete":
        piece.unlink()
    else:
        (path / sharded.INDEX).write_text('{"files": {}}')
    expected = {"flip": "__0_0.distcp differs", "truncate": "__0_0.distcp differs", "delete": "missing __0_0.distcp"}
    with pytest.raises(CheckpointError, match=expected.get(damage, "its files.json differs")):
        read_checkpoint(path)
    assert latest_checkpoint(tmp_path)[1]["step"] == 4


def test_a_directory_that_was_never_committed_is_not_a_checkpoint_and_is_replaced_by_the_next_commit(
    tmp_path, monkeypatch
):
    """A crash after the directory is renamed into place, before its manifest: it is not discovered, not read,
    and committing the same step again replaces it."""
    _write(tmp_path, "step-000000004.dcp", 4)

    def crash(path, write):
        if path.name.endswith(".manifest.json") and "000000008" in path.name:
            raise KeyboardInterrupt("killed before the manifest")
        return original(path, write)

    original = sharded.write_atomically
    monkeypatch.setattr(sharded, "write_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, "step-000000008.dcp", 8, pieces=b"the attempt that died")
    stale = tmp_path / "step-000000008.dcp"
    assert stale.is_dir() and not manifest_path(stale).exists()
    assert [m.step for m in committed_checkpoints(tmp_path)] == [4]
    assert latest_checkpoint(tmp_path)[1]["step"] == 4
    with pytest.raises(CheckpointError, match="has no manifest: it was never committed"):
        read_checkpoint(stale)

    monkeypatch.setattr(sharded, "write_atomically", original)
    path = _write(tmp_path, "step-000000008.dcp", 8, pieces=b"the attempt after the restart", pid=456)
    assert (path / "__0_0.distcp").read_bytes() == b"the attempt after the restart"
    assert latest_checkpoint(tmp_path)[1]["step"] == 8


def test_pruning_deletes_sharded_checkpoints_and_leftover_directories(tmp_path):
    for step in (4, 8, 12):
        _write(tmp_path, f"step-{step:09d}.dcp", step)
    leftover = sharded.temporary_directory(tmp_path / "step-000000016.dcp", 999)
    leftover.mkdir()
    (leftover / "__1_0.distcp").write_bytes(b"half")
    deleted = prune(tmp_path, 2, 0, is_ours=lambda p: p.suffix in (".pt", ".dcp"), best_first=lambda ms: ms)
    assert [p.name for p in deleted] == ["step-000000004.dcp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000008.dcp",
        "step-000000008.manifest.json",
        "step-000000012.dcp",
        "step-000000012.manifest.json",
    ]


def test_load_checkpoint_refuses_a_sharded_checkpoint_saying_how_to_read_it(tmp_path):
    from trainwell.files.checkpoint import load_checkpoint

    path = _write(tmp_path, "step-000000004.dcp", 4)
    with pytest.raises(CheckpointError, match="is sharded.*trainwell.load_model.*consolidate"):
        load_checkpoint(path, torch.nn.Linear(2, 1))
