"""Sharded checkpoints on disk: a directory of every process's shards, committed by one manifest.

When the weights are sharded over the processes (``strategy="fsdp"``), a checkpoint is a
directory beside the single-file ones, and the same manifest commits it::

    checkpoints/step-000000012.dcp/
        __0_0.distcp, __1_0.distcp     each process's pieces of the sharded tensors (torch.distributed.checkpoint)
        .metadata                      where each sharded tensor's pieces are (torch.distributed.checkpoint)
        trainer.pt                     the rest of the checkpoint, with a placeholder for each sharded tensor
        files.json                     the SHA-256 and size of each file above
    checkpoints/step-000000012.manifest.json     the SHA-256 and size of files.json: the commit

The commit keeps the order of a single file: every process writes its pieces into a temporary
directory (``.step-000000012.dcp.tmp-<pid>``), each file fsynced; rank 0 then writes
``trainer.pt`` and ``files.json``, renames the directory into place, fsyncs the checkpoint
directory, and only then writes the manifest. A kill at any moment leaves every committed
checkpoint intact; an uncommitted directory is never taken for one (discovery goes by manifests)
and pruning removes it. Rank 0's writes are retried and their failures explained as a single
file's are (:mod:`trainwell.files.checkpoint_retry`). On load, ``files.json`` is checked against
the manifest and every file against ``files.json``.

This module knows the layout and the bytes; the collective writing and reading of the pieces
is :mod:`trainwell.distributed.shards`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainwell.exceptions import CheckpointError
from trainwell.files.atomic import fsync_directory, write_atomically
from trainwell.files.checkpoint_retry import serialised_size, with_retry
from trainwell.files.manifest import Manifest, manifest_path, manifest_text, remove
from trainwell.files.retry import DEFAULT_POLICY, RetryPolicy

SUFFIX = ".dcp"
INDEX = "files.json"
REST = "trainer.pt"
# A sharded tensor's place in trainer.pt: {PLACEHOLDER: its key among the pieces, "shape", "dtype", "placements"}.
PLACEHOLDER = "__sharded_tensor__"


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a sharded checkpoint: a ``.dcp`` directory (not a file, not a run directory).

    Example:
        >>> is_sharded_checkpoint("checkpoints/step-000000012.pt")
        False
    """
    path = Path(path)
    return path.suffix == SUFFIX and path.is_dir()


def temporary_directory(path: Path, pid: int) -> Path:
    """Where the pieces of checkpoint ``path`` are written before the commit (named after rank 0's pid)."""
    return path.with_name(f".{path.name}.tmp-{pid}")


def digest(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a file."""
    sha256, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha256.update(block)
            size += len(block)
    return sha256.hexdigest(), size


# ---------------------------------------------------------------------------------------- the placeholders


def split(
    checkpoint: Any, is_sharded: Callable[[Any], bool], describe: Callable[[Any], dict[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    """``checkpoint`` with each sharded tensor replaced by a placeholder, and those tensors by key.

    A tensor held in two places (the classic ``model_state_dict`` and the trainer's ``model``)
    is stored once: both placeholders name the same key.

    Args:
        checkpoint: What a checkpoint holds (dicts, lists and tuples of tensors and plain data).
        is_sharded: Whether a value is a sharded tensor.
        describe: A sharded tensor's global ``shape``, ``dtype`` and ``placements``, as plain data.

    Returns:
        ``(rest, pieces)``: the checkpoint with placeholders, and ``{key: sharded tensor}``.

    Example:
        >>> rest, pieces = split({"w": [1.0, "big"]}, lambda v: v == "big", lambda v: {"shape": [2]})
        >>> rest, pieces
        ({'w': [1.0, {'__sharded_tensor__': 'w/1', 'shape': [2]}]}, {'w/1': 'big'})
    """
    pieces: dict[str, Any] = {}
    keys: dict[int, str] = {}

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if is_sharded(value):
            key = keys.setdefault(id(value), "/".join(path))
            pieces[key] = value
            return {PLACEHOLDER: key, **describe(value)}
        if isinstance(value, dict):
            return type(value)((name, walk(item, (*path, str(name)))) for name, item in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(walk(item, (*path, str(index))) for index, item in enumerate(value))
        return value

    return walk(checkpoint, ()), pieces


def placeholders(rest: Any) -> Iterator[dict[str, Any]]:
    """Every placeholder in a checkpoint's rest (a key may appear more than once)."""
    if isinstance(rest, dict):
        if PLACEHOLDER in rest:
            yield rest
            return
        for item in rest.values():
            yield from placeholders(item)
    elif isinstance(rest, (list, tuple)):
        for item in rest:
            yield from placeholders(item)


def fill(rest: Any, pieces: dict[str, Any]) -> Any:
    """``rest`` with each placeholder replaced by the loaded tensor of its key."""
    if isinstance(rest, dict):
        if PLACEHOLDER in rest:
            return pieces[rest[PLACEHOLDER]]
        return type(rest)((name, fill(item, pieces)) for name, item in rest.items())
    if isinstance(rest, (list, tuple)):
        return type(rest)(fill(item, pieces) for item in rest)
    return rest


# ---------------------------------------------------------------------------------------- writing (rank 0)


def write_rest(
    directory: Path,
    rest: dict[str, Any],
    *,
    path: Path | None = None,
    retry: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
) -> tuple[str, int]:
    """Write the checkpoint's rest as ``trainer.pt`` into ``directory``, atomically; its SHA-256 and size.

    Retried while the failure is transient, as a single-file checkpoint is
    (:func:`trainwell.files.checkpoint_retry.with_retry`).

    Args:
        directory: The temporary directory of the checkpoint being written.
        rest: The checkpoint with placeholders for its sharded tensors.
        path: The checkpoint's name, for the error (default: ``directory``).
        retry, sleep: Attempts and backoff for transient write errors, and the wait between them.

    Raises:
        TypeError: it holds something other than tensors and plain data.
        CheckpointError: it could not be written (the free space and the fix named).
    """
    import torch

    from trainwell.files.checkpoint import check_plain

    check_plain(rest)
    return with_retry(
        lambda: write_atomically(directory / REST, lambda file: torch.save(dict(rest), file)),
        retry,
        sleep,
        path or directory,
        size=lambda: serialised_size(rest),
    )


def commit(
    temporary: Path,
    path: Path,
    files: dict[str, tuple[str, int]],
    *,
    step: int | None,
    epoch: int | None,
    val_loss: float | None,
    kind: str,
    healthy: bool,
    monitor: str | None = None,
    monitored: float | None = None,
    retry: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
) -> Path:
    """Move the written directory ``temporary`` to ``path`` and commit it with its manifest (written last).

    Each step is retried while its failure is transient, as for a single-file checkpoint.

    Args:
        temporary: The directory every process wrote into.
        path: The checkpoint's name (``step-000000012.dcp``).
        files: Each file's SHA-256 and size, by its name in the directory.
        step, epoch, val_loss, kind, healthy, monitor, monitored: The manifest's fields
            (:func:`trainwell.files.manifest.manifest_text`).
        retry, sleep: Attempts and backoff for transient write errors, and the wait between them.

    Returns:
        ``path``.

    Raises:
        CheckpointError: it could not be committed (the free space and the fix named); earlier
            checkpoints are intact.
    """
    listed = {name: {"sha256": sha256, "bytes": size} for name, (sha256, size) in sorted(files.items())}
    text = json.dumps({"files": listed}, indent=1).encode("utf-8")
    index_digest = with_retry(
        lambda: write_atomically(temporary / INDEX, lambda file: file.write(text)), retry, sleep, path, "commit"
    )
    fsync_directory(temporary)
    with_retry(lambda: _move_into_place(temporary, path), retry, sleep, path, "commit")
    manifest = manifest_text(
        path,
        *index_digest,
        step=step,
        epoch=epoch,
        val_loss=val_loss,
        kind=kind,
        healthy=healthy,
        monitor=monitor,
        monitored=monitored,
    )
    with_retry(
        lambda: write_atomically(manifest_path(path), lambda file: file.write(manifest)), retry, sleep, path, "commit"
    )
    return path


def _move_into_place(temporary: Path, path: Path) -> None:
    # A committed manifest never describes a directory being replaced: it goes first.
    manifest_path(path).unlink(missing_ok=True)
    if path.exists():  # the pieces of an attempt that was never committed
        remove(path)
    os.replace(temporary, path)
    fsync_directory(path.parent)


# ---------------------------------------------------------------------------------------- reading


def verify_directory(path: Path, manifest: Manifest) -> Manifest:
    """Check a sharded checkpoint: ``files.json`` against the manifest, every file against ``files.json``.

    Raises:
        CheckpointError: a file is missing, or its size or SHA-256 differs, naming it.
    """
    index = path / INDEX
    if not index.is_file():
        raise CheckpointError(f"sharded checkpoint '{path}' has no {INDEX} although its manifest commits it.")
    if digest(index) != (manifest.sha256, manifest.size):
        raise CheckpointError(
            f"sharded checkpoint '{path}' is corrupt: its {INDEX} differs from the one its manifest committed. "
            "Resume from an earlier checkpoint (resume='auto' picks the newest good one)."
        )
    try:
        listed = json.loads(index.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"sharded checkpoint '{path}' has an unreadable {INDEX}: {error}.") from None
    for name, entry in listed.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"sharded checkpoint '{path}' is missing {name}, which its {INDEX} lists.")
        if digest(file) != (entry["sha256"], entry["bytes"]):
            raise CheckpointError(
                f"sharded checkpoint '{path}' is corrupt: {name} differs from the SHA-256 and size recorded when it "
                "was committed (truncated or changed on disk). Resume from an earlier checkpoint (resume='auto' picks "
                "the newest good one)."
            )
    return manifest


def read_rest(path: Path) -> dict[str, Any]:
    """A sharded checkpoint's ``trainer.pt``, unpickled safely (``weights_only=True``), placeholders in place.

    Raises:
        CheckpointError: it cannot be read.
    """
    import pickle

    import torch

    try:
        return torch.load(path / REST, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"sharded checkpoint '{path}' has an unreadable {REST}: {error}") from None
