"""Manifests that are valid JSON with the wrong types: the checkpoint they describe counts as uncommitted, everywhere."""

import json
import logging

import pytest

import trainwell

from .conftest import last_line

MALFORMED = {
    "step as text": lambda manifest: manifest.update(step="9999"),
    "files as a list": lambda manifest: manifest.update(files=[manifest["files"]]),
    "val_loss as text": lambda manifest: manifest.update(val_loss="low"),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_type_malformed_manifest_is_skipped_with_a_warning_by_every_reader(
    finished_run, trainwell_command, caplog, change
):
    checkpoints = finished_run / "checkpoints"
    newest = checkpoints / "epoch-0002-step-000000046.manifest.json"
    manifest = json.loads(newest.read_text())
    change(manifest)
    newest.write_text(json.dumps(manifest))
    older = checkpoints / "epoch-0001-step-000000023.pt"

    with caplog.at_level(logging.WARNING, logger="trainwell"):
        assert trainwell.load_checkpoint(finished_run)["step"] == 23
        assert trainwell.load_model(finished_run, "last").checkpoint == older
        assert trainwell.load_model(finished_run, "best").checkpoint == older
        status, stderr = trainwell_command("eval", finished_run)
        assert status == 0, stderr
        # --resume auto continues from the epoch-1 checkpoint, as if the spoiled one had never been committed.
        status, stderr = trainwell_command(
            "train", "--resume", "auto", "--out", finished_run, "--epochs", "3", "--quiet"
        )
        assert status == 0, last_line(stderr)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(f"Ignoring checkpoint manifest {newest}" in line and "malformed" in line for line in warnings)
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    resumed = [row for row in rows if row["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["checkpoint"] == str(older)
    assert [row["epoch"] for row in rows if row["event"] == "epoch"] == [1, 2, 3]
