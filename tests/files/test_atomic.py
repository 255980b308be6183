"""Files written whole or not at all: through a temporary file, fsynced, renamed into place."""

import errno
import os
from pathlib import Path

import pytest

from trainwell.exceptions import StorageError
from trainwell.files import atomic


def test_write_bytes_fsyncs_the_file_before_renaming_it_into_place(tmp_path, monkeypatch):
    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda descriptor: events.append("fsync") or fsync(descriptor))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: events.append(("replace", Path(a).name)) or replace(a, b))
    target = tmp_path / "plots" / "curves.png"
    atomic.write_bytes(target, b"an image")
    assert events[:2] == ["fsync", ("replace", f".curves.png.tmp-{os.getpid()}")]
    assert target.read_bytes() == b"an image" and os.listdir(target.parent) == ["curves.png"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    atomic.write_text(target, "the previous report")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(StorageError, match=r"could not write '.+report\.html': \[Errno 28\] No space left on device"):
        atomic.write_text(target, "the new report")
    monkeypatch.undo()
    assert target.read_text() == "the previous report" and os.listdir(tmp_path) == ["report.html"]
