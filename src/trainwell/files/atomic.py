"""Files written so that a crash never leaves half of one: through a temporary file, fsynced, renamed into place.

Every file trainwell writes goes through here: checkpoints and their manifests, config.yaml,
data.json, plots, reports, predictions. A reader therefore finds either the previous complete
file or the new complete file, never a mix; a temporary file left by a crash is named
``.<name>.tmp-<pid>`` (or ``<name>.tmp``) and never taken for the real one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


class HashingWriter:
    """A write-only file object that hashes what passes through it (no second read of the file)."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def write_atomically(path: Path, write: Callable[[Any], Any]) -> tuple[str, int]:
    """Write through ``write(file)`` into a temporary file, fsync it, rename it to ``path``, fsync the directory."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as raw:
            hashing = HashingWriter(raw)
            write(hashing)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Free the space (a disk-full error is retried) and leave nothing that looks complete.
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return hashing.sha256.hexdigest(), hashing.size


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
    """Write ``data`` as YAML, atomically."""
    import yaml

    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file renamed into place, so a crash never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file renamed into place (an image, a report)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
