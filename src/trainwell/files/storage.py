"""Why a write failed, in words a user can act on: a full disk, a permission, or something else.

A write can fail deep inside a serialiser: ``torch.save``'s zip writer turns the ``OSError`` of
a full disk into ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos ...``.
:func:`classify` looks beneath such an error for the operating system's own (the serialiser
keeps it as the error's context), and asks the file system how much room is left
(``shutil.disk_usage``), so that every failed write is reported the same way: the file, the
reason, the free space, and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainwell.exceptions import StorageError, TrainwellError

DISK_FULL = "disk full"
PERMISSION = "permission"
OTHER = "other"

# errno values of a file system out of room (EDQUOT: a quota; EFBIG: a file size limit).
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# errno values no retry can fix: the file system refuses this process, or the path is wrong.
_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}
# Below this much free space, a failure the operating system did not explain is taken for a full disk.
_NEARLY_FULL_BYTES = 1 << 20


@dataclass(frozen=True)
class WriteFailure:
    """What made a write fail.

    Attributes:
        kind: ``"disk full"``, ``"permission"`` (including a read-only file system) or ``"other"``.
        cause: The operating system's error when there is one (beneath a serialiser's), else the error itself.
        free_bytes: Free space on the file system of the directory written to (None when it cannot be read).
        permanent: Whether retrying cannot help (a permission, a path that cannot be a file).
    """

    kind: str
    cause: BaseException
    free_bytes: int | None
    permanent: bool

    def reason(self) -> str:
        """The cause in a few words: ``[Errno 28] No space left on device``, or the serialiser's first line."""
        if isinstance(self.cause, OSError) and self.cause.errno is not None:
            return f"[Errno {self.cause.errno}] {self.cause.strerror}"
        return first_line(self.cause)

    def free(self) -> str:
        """The free space, for a message: ``1.2 MB free``."""
        return "free space unknown" if self.free_bytes is None else f"{format_bytes(self.free_bytes)} free"


def classify(error: BaseException, directory: Path) -> WriteFailure:
    """Say why writing into ``directory`` failed with ``error``.

    Example:
        >>> classify(OSError(errno.EROFS, "Read-only file system"), Path(".")).kind
        'permission'
    """
    cause = os_error_beneath(error) or error
    free = free_bytes(directory)
    code = cause.errno if isinstance(cause, OSError) else None
    if code in _DISK_FULL_ERRNOS:
        return WriteFailure(DISK_FULL, cause, free, permanent=False)
    if code in _PERMISSION_ERRNOS or isinstance(cause, PermissionError):
        return WriteFailure(PERMISSION, cause, free, permanent=True)
    if code in _PATH_ERRNOS:
        return WriteFailure(OTHER, cause, free, permanent=True)
    if code is None and free is not None and free < _NEARLY_FULL_BYTES:
        # A serialiser that lost the operating system's error: an almost full disk explains it.
        return WriteFailure(DISK_FULL, cause, free, permanent=False)
    return WriteFailure(OTHER, cause, free, permanent=False)


def os_error_beneath(error: BaseException) -> OSError | None:
    """``error`` if it is an OSError, else the OSError it was raised from or during (a serialiser's cause), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and not isinstance(error, TrainwellError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def free_bytes(directory: Path) -> int | None:
    """Free space on the file system holding ``directory`` (or its nearest existing parent), or None."""
    directory = Path(directory)
    for candidate in (directory, *directory.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def fix_for(failure: WriteFailure, directory: Path) -> str:
    """What to do about ``failure`` when writing into ``directory``."""
    if failure.kind == DISK_FULL:
        return f"free space on the file system of '{directory}' or write to a larger disk"
    if failure.kind == PERMISSION:
        if isinstance(failure.cause, OSError) and failure.cause.errno == errno.EROFS:
            return f"'{directory}' is on a read-only file system: write somewhere else, or remount it read-write"
        return f"make '{directory}' writable for this user, or write somewhere else"
    return "check the file system (a network mount that went away, a failing disk), or write somewhere else"


def storage_error(path: Path, error: BaseException, what: str = "write") -> StorageError:
    """A one-line StorageError for a failed write of ``path``: the reason, the free space and the fix."""
    path = Path(path)
    failure = classify(error, path.parent)
    return StorageError(
        f"could not {what} '{path}': {failure.reason()} ({failure.free()}). Fix: {fix_for(failure, path.parent)}."
    )


def describe_os_error(error: OSError) -> str:
    """One line for an OSError no check of trainwell's caught: the file, the reason, the free space and the fix."""
    filename = getattr(error, "filename", None)
    if filename is None:
        return f"{first_line(error)}. Check the files and directories this command reads and writes."
    path = Path(filename)
    failure = classify(error, path.parent)
    return f"'{path}': {failure.reason()} ({failure.free()}). Fix: {fix_for(failure, path.parent)}."


@contextlib.contextmanager
def writing(path: Path, what: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside the block into a :class:`StorageError` naming ``path`` and the fix."""
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        raise storage_error(path, error, what) from error


def format_bytes(size: float) -> str:
    """``1234567`` -> ``'1.2 MB'``.

    Example:
        >>> format_bytes(0), format_bytes(2_400_000)
        ('0 bytes', '2.4 MB')
    """
    if size < 1000:
        return f"{int(size)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
