import json
import logging

import pytest
import torch

import trainwell
from trainwell import CheckpointError
from trainwell.files.checkpoint import latest_checkpoint, verify, write_checkpoint
from trainwell.files.manifest import committed_checkpoints, manifest_path

# Valid JSON with the wrong types: each must leave its checkpoint uncommitted, never crash discovery.
MALFORMED = {
    "step as text": lambda m: m.update(step="9999"),
    "files as a list": lambda m: m.update(files=[m["files"]]),
    "val_loss as text": lambda m: m.update(val_loss="low"),
    "healthy as a number": lambda m: m.update(healthy=1),
    "size as text": lambda m: next(iter(m["files"].values())).update(bytes="12"),
    "digest not hex": lambda m: next(iter(m["files"].values())).update(sha256="zz"),
    "negative epoch": lambda m: m.update(epoch=-1),
    "a list, not an object": lambda m: m.clear() or m.update(_list=True),
}


def _two_checkpoints(directory):
    for step in (10, 20):
        write_checkpoint(directory / f"step-{step:09d}.pt", {"step": step}, step=step, epoch=step // 10, val_loss=0.5)
    return directory / "step-000000010.pt", directory / "step-000000020.pt"


def _spoil(path, change):
    manifest = json.loads(manifest_path(path).read_text())
    change(manifest)
    manifest_path(path).write_text("[]" if manifest.get("_list") else json.dumps(manifest))


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_manifest_commits_nothing_and_is_named_in_a_warning(tmp_path, caplog, change):
    older, newer = _two_checkpoints(tmp_path)
    _spoil(newer, change)
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        assert [m.path for m in committed_checkpoints(tmp_path)] == [older]
        assert latest_checkpoint(tmp_path)[0] == older
        assert trainwell.load_checkpoint(tmp_path)["step"] == 10
    warned = [r.getMessage() for r in caplog.records if str(manifest_path(newer)) in r.getMessage()]
    assert warned and all("counts as uncommitted" in line and "malformed" in line for line in warned)
    with pytest.raises(CheckpointError, match=f"the manifest '{manifest_path(newer)}' is malformed"):
        verify(newer)  # named explicitly, a checkpoint that cannot be verified is refused


def test_a_valid_manifest_describes_its_checkpoint(tmp_path):
    _, newer = _two_checkpoints(tmp_path)
    manifest = verify(newer)
    assert (manifest.step, manifest.epoch, manifest.val_loss, manifest.kind, manifest.healthy) == (
        20,
        2,
        0.5,
        "manual",
        True,
    )
    assert manifest.size == newer.stat().st_size and len(manifest.sha256) == 64
    assert torch.load(newer, weights_only=True)["step"] == 20
