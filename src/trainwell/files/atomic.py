"""Files written so that a crash never leaves half of one: through a temporary file, fsynced, renamed into place.

Every file trainwell writes goes through here: checkpoints and their manifests, config.yaml,
data.json, plots, reports, predictions. A reader therefore finds either the previous complete
file or the new complete file, never a mix; a temporary file left by a crash is named
``.<name>.tmp-<pid>`` and never taken for the real one.

``write_text``, ``write_bytes`` and ``write_yaml`` fail with a one-line
:class:`~trainwell.exceptions.StorageError` naming the file, the reason (a read-only directory,
a full disk) and the fix; :func:`write_atomically` raises the error as it is, for the checkpoint
writer to classify and retry (:mod:`trainwell.files.storage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainwell.files.storage import os_error_beneath, writing


class HashingWriter:
    """A write-only file object that hashes what passes through it (no second read of the file).

    Attributes:
        error: The OSError a write raised, kept because a serialiser may report it as its own error.
    """

    def __init__(self, file: Any) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def write_atomically(path: Path, write: Callable[[Any], Any]) -> tuple[str, int]:
    """Write through ``write(file)`` into a temporary file, fsync it, rename it to ``path``, fsync the directory."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    hashing: HashingWriter | None = None
    try:
        with open(temporary, "wb") as raw:
            hashing = HashingWriter(raw)
            write(hashing)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        # Free the space (a disk-full error is retried) and leave nothing that looks complete.
        with contextlib.suppress(OSError):  # on a read-only file system even a missing file cannot be unlinked
            temporary.unlink(missing_ok=True)
        if hashing is not None and hashing.error is not None and os_error_beneath(error) is None:
            # torch.save's zip writer reports a failed write as "unexpected pos": keep the real cause with it.
            error.__context__ = hashing.error
        raise
    fsync_directory(path.parent)
    return hashing.sha256.hexdigest(), hashing.size


def _umask() -> int:
    # Reading the umask means setting it: done once, at import, before any thread of ours runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def ordinary_mode(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` would (0644 under the usual umask 022).

    Files written by a library through ``mkstemp`` (safetensors, a download's partial file) are
    created 0600; a run's files should all read alike.
    """
    os.chmod(path, 0o666 & ~_UMASK)


def link_atomically(source: Path, path: Path) -> None:
    """Make ``path`` hold ``source``'s bytes, atomically: a hard link (no copy) where the file system has them,
    else a copy.

    Either way the new name is prepared under a temporary name, fsynced and renamed into place, so
    a reader finds the previous file or the new one, never part of one.
    """
    import shutil

    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        try:
            os.link(source, temporary)
        except OSError:
            # No hard links here (FAT, some network file systems): a copy, flushed before the rename.
            shutil.copyfile(source, temporary)
            with open(temporary, "rb+") as copied:
                os.fsync(copied.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make renames and deletions in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML, atomically.

    Raises:
        StorageError: the file cannot be written (read-only directory, full disk, permission).
    """
    import yaml

    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file renamed into place, so a crash never leaves half a file.

    Raises:
        StorageError: the file cannot be written (read-only directory, full disk, permission).
    """
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (:func:`write_atomically`: an image, a report); its directory is created.

    Raises:
        StorageError: the file cannot be written (read-only directory, full disk, permission).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: file.write(data))
