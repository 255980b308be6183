import errno
import shutil
from collections import namedtuple

import pytest

from trainwell import StorageError, TrainwellError
from trainwell.files import storage
from trainwell.files.atomic import write_atomically, write_text
from trainwell.files.storage import DISK_FULL, OTHER, PERMISSION, classify, describe_os_error, format_bytes


def _zip_writer_error(cause):
    """What torch.save's zip writer raises when a write under it failed: a RuntimeError in the OSError's context."""
    try:
        try:
            raise cause
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as error:
        error.__context__ = cause
        return error


def test_a_full_disk_beneath_the_zip_writers_runtime_error_is_found(tmp_path):
    failure = classify(_zip_writer_error(OSError(errno.ENOSPC, "No space left on device")), tmp_path)
    assert (failure.kind, failure.permanent, failure.reason()) == (
        DISK_FULL,
        False,
        "[Errno 28] No space left on device",
    )
    assert failure.free_bytes == shutil.disk_usage(tmp_path).free


def test_permission_and_read_only_are_permanent_and_other_errors_are_retried(tmp_path):
    assert classify(OSError(errno.EROFS, "Read-only file system"), tmp_path).kind == PERMISSION
    assert classify(PermissionError(errno.EACCES, "Permission denied"), tmp_path).permanent
    other = classify(OSError(errno.EIO, "Input/output error"), tmp_path)
    assert (other.kind, other.permanent) == (OTHER, False)


def test_an_unexplained_failure_on_an_almost_full_disk_counts_as_disk_full(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    failure = classify(RuntimeError("unexpected pos 287744 vs 287632"), tmp_path)
    assert (failure.kind, failure.free()) == (DISK_FULL, "4.1 kB free")
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    assert classify(RuntimeError("unexpected pos"), tmp_path).kind == OTHER


def test_write_atomically_keeps_the_os_error_a_serialiser_swallowed(tmp_path):
    with pytest.raises(RuntimeError) as caught:
        write_atomically(tmp_path / "x.pt", _failing_write)
    assert classify(caught.value, tmp_path).kind == DISK_FULL
    assert list(tmp_path.iterdir()) == []  # nothing that looks complete


def _failing_write(file):
    """A serialiser whose write fails with ENOSPC, which it then reports as its own RuntimeError without a context."""
    real = file.file

    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            real.flush()

    file.file = Full()
    try:
        file.write(b"data")
    except OSError:
        pass
    error = RuntimeError("unexpected pos 4 vs 0")
    error.__suppress_context__ = True
    raise error from None


def test_write_text_fails_with_one_line_naming_the_file_the_reason_and_the_fix(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"

    real_open = open

    def read_only(file, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(StorageError) as caught:
        write_text(target, "epochs: 3\n")
    message = str(caught.value)
    assert isinstance(caught.value, TrainwellError) and isinstance(caught.value, OSError)
    assert "\n" not in message
    assert f"could not write '{target}': [Errno 30] Read-only file system (" in message
    assert "free). Fix: " in message and "read-only file system: write somewhere else" in message


def test_an_unexpected_os_error_is_described_in_one_line(tmp_path):
    line = describe_os_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")))
    assert line.startswith(f"'{tmp_path / 'x'}': [Errno 13] Permission denied (") and "make" in line
    assert "Check the files" in describe_os_error(OSError("no file named"))


def test_sizes_read_naturally():
    assert [format_bytes(n) for n in (999, 1000, 2_400_000, 5 * 10**12)] == ["999 bytes", "1.0 kB", "2.4 MB", "5.0 TB"]
