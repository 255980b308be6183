"""Checkpoint files: atomic writes committed by a manifest, safe loading, and discovery.

A checkpoint is one ``torch.save`` file holding only tensors and plain data, plus a small manifest
beside it (``<name>.manifest.json``) with the file's SHA-256 and size, the step and epoch it was
taken at, and its ``val_loss``. The manifest commits the checkpoint:

    1. the checkpoint goes to a temporary file in the same directory, flushed and fsynced;
    2. it is renamed into place and the directory is fsynced;
    3. the manifest is written the same way; only now does the checkpoint count;
    4. only then may older checkpoints be deleted (each manifest before its file, so a half-deleted
       checkpoint is never taken for a committed one).

A crash at any moment therefore leaves every committed checkpoint intact. On load the file is
checked against its manifest (a truncated or changed file is refused with an error naming it)
and unpickled with ``weights_only=True``, so a crafted file cannot run code. "Latest" means the
highest committed step, never the newest modification time.

Writes are retried with exponential backoff on transient failures (:mod:`trainwell.files.retry`),
whatever raised them: an OSError, or the serialiser's own error for one (``torch.save``'s zip
writer reports a full disk as a RuntimeError; :mod:`trainwell.files.storage` finds the cause).
Permanent ones (permission denied, a read-only file system) and a disk still full after the
retries fail with a :class:`~trainwell.exceptions.CheckpointError` that names the file, the free
space and the fix, and leave earlier checkpoints untouched.
"""

from __future__ import annotations

import logging
import pickle
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainwell.exceptions import CheckpointError
from trainwell.files.atomic import link_atomically, write_atomically
from trainwell.files.checkpoint_retry import serialised_size, with_retry
from trainwell.files.manifest import (
    Manifest,
    checkpoint_directory,
    committed_checkpoints,
    manifest_path,
    manifest_text,
    read_manifest,
)
from trainwell.files.model_state import load_model_state
from trainwell.files.retry import DEFAULT_POLICY, RetryPolicy
from trainwell.files.sharded import digest, is_sharded_checkpoint, read_rest, verify_directory
from trainwell.files.storage import first_line

logger = logging.getLogger("trainwell")

# 2: a trainer's state under "trainer", one entry per stateful part (1: flat keys, read by reliability.resume).
FORMAT_VERSION = 2


# ---------------------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | Path,
    model: Any,
    optimizer: Any = None,
    *,
    retry: RetryPolicy = DEFAULT_POLICY,
    **state: Any,
) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``) atomically, committed by a manifest.

    The file is a dictionary with the classic keys, so code written for the usual ``torch.save``
    dictionaries reads it: ``model_state_dict``, ``optimizer_state_dict``, ``epoch`` and
    ``val_loss`` (None unless given), plus ``format_version``, ``versions`` and every keyword in
    ``state``.

    Args:
        path: The file to write (e.g. ``"checkpoints/model.pt"``); its directory is created.
        model: The ``nn.Module`` whose ``state_dict`` is saved.
        optimizer: An optimizer whose ``state_dict`` is saved too.
        retry: Attempts and backoff for transient I/O errors.
        **state: More to save: tensors and plain data only (numbers, strings, None, lists, tuples,
            dicts), e.g. ``epoch=3, val_loss=0.21, step=1200``.

    Returns:
        The checkpoint's path.

    Raises:
        TypeError: a value in ``state`` is not a tensor or plain data (it could not be loaded safely).
        CheckpointError: the file could not be written; an earlier file at ``path`` is left as it was.

    Example:
        >>> import torch, tempfile, trainwell
        >>> model = torch.nn.Linear(2, 1)
        >>> path = trainwell.save_checkpoint(tempfile.mkdtemp() + "/model.pt", model, epoch=3, val_loss=0.5)
        >>> trainwell.load_checkpoint(path, model)["epoch"]
        3
    """
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "epoch": state.pop("epoch", None),
        "val_loss": state.pop("val_loss", None),
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else None,
        **state,
    }
    step = checkpoint.get("step") if isinstance(checkpoint.get("step"), int) else None
    return write_checkpoint(
        Path(path), checkpoint, step=step, epoch=checkpoint["epoch"], val_loss=checkpoint["val_loss"], retry=retry
    )


def write_checkpoint(
    path: Path,
    checkpoint: Mapping[str, Any],
    *,
    step: int | None = None,
    epoch: int | None = None,
    val_loss: float | None = None,
    kind: str = "manual",
    healthy: bool = True,
    monitor: str | None = None,
    monitored: float | None = None,
    retry: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
) -> Path:
    """Write ``checkpoint`` to ``path`` atomically, then commit it with its manifest.

    A manifest already at ``path`` is removed first, so no committed manifest ever describes a
    file that is being replaced.

    Raises:
        TypeError: ``checkpoint`` holds something other than tensors and plain data.
        CheckpointError: writing failed after the retries, or failed permanently.
    """
    import torch

    check_plain(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest_file = manifest_path(path)
    with_retry(lambda: manifest_file.unlink(missing_ok=True), retry, sleep, path, "remove the old manifest of")
    sha256, size = with_retry(
        lambda: write_atomically(path, lambda file: torch.save(dict(checkpoint), file)),
        retry,
        sleep,
        path,
        size=lambda: serialised_size(checkpoint),
    )
    text = manifest_text(
        path,
        sha256,
        size,
        step=step,
        epoch=epoch,
        val_loss=val_loss,
        kind=kind,
        healthy=healthy,
        monitor=monitor,
        monitored=monitored,
    )
    with_retry(lambda: write_atomically(manifest_file, lambda file: file.write(text)), retry, sleep, path, "commit")
    return path


def alias_checkpoint(
    source: Manifest,
    alias: Path,
    *,
    retry: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
) -> Path:
    """Make ``alias`` (``last.pt``, ``best.pt``) the committed checkpoint ``source``, under a stable name.

    The alias's manifest goes first, then its bytes are put in place (a hard link, else a copy:
    :func:`~trainwell.files.atomic.link_atomically`), then its new manifest, with ``source``'s
    checksum and values and ``alias_of`` naming it, commits it: a crash in between leaves an
    uncommitted alias, which nothing loads, never a half-written one that looks complete. Discovery
    and pruning leave aliases out (:func:`~trainwell.files.manifest.committed_checkpoints`).

    Raises:
        CheckpointError: the alias could not be written (``source`` is untouched).
    """
    alias = Path(alias)
    manifest_file = manifest_path(alias)
    with_retry(lambda: manifest_file.unlink(missing_ok=True), retry, sleep, alias, "remove the old manifest of")
    with_retry(lambda: link_atomically(source.path, alias), retry, sleep, alias)
    text = manifest_text(
        alias,
        source.sha256,
        source.size,
        step=source.step,
        epoch=source.epoch,
        val_loss=source.val_loss,
        kind=source.kind,
        healthy=source.healthy,
        monitor=source.monitor,
        monitored=source.monitored,
        alias_of=source.path.name,
    )
    with_retry(lambda: write_atomically(manifest_file, lambda file: file.write(text)), retry, sleep, alias, "commit")
    return alias


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would refuse, naming where it is.

    Raises:
        TypeError: naming the key path and the offending type.
    """
    import torch

    # Exact types: a subclass (numpy.float64, torch's version string) pickles as its own class.
    if (
        value is None
        or type(value) in (bool, int, float, str)
        or isinstance(value, (torch.Tensor, torch.Size, torch.dtype, torch.device))
    ):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int, float, bool, type(None)):
                raise TypeError(
                    f"{where} has a key {key!r} of type {type(key).__name__}: keys must be strings or numbers."
                )
            check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: a checkpoint holds only tensors and "
        "plain data (numbers, strings, None, lists, tuples, dicts), so that it loads with weights_only=True "
        "and never runs code. Convert it, e.g. to a dict of its fields."
    )


# ---------------------------------------------------------------------------------------- loading


def verify(path: str | Path) -> Manifest | None:
    """Check ``path`` against its manifest; return the manifest (None when there is none).

    Raises:
        CheckpointError: the file is missing, or its size or SHA-256 differs from the manifest.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None:
        return None
    if is_sharded_checkpoint(path):
        return verify_directory(path, manifest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' is missing although its manifest commits it.") from None
    if size != manifest.size:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: it has {size:,} bytes but its manifest recorded {manifest.size:,} "
            "(truncated or overwritten). Resume from an earlier checkpoint (resume='auto' picks the newest good one)."
        )
    if digest(path)[0] != manifest.sha256:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: its SHA-256 differs from the one its manifest recorded when it was "
            "committed (the file changed on disk). Resume from an earlier checkpoint (resume='auto' picks the newest good one)."
        )
    return manifest


def read_checkpoint(path: str | Path, *, verified: bool = False) -> dict[str, Any]:
    """Verify ``path`` against its manifest (when it has one) and unpickle it safely, onto the CPU.

    A sharded checkpoint (a ``.dcp`` directory, :mod:`trainwell.files.sharded`) must be committed;
    its sharded tensors come back as placeholders, which
    :func:`trainwell.distributed.shards.load_pieces` replaces with the tensors.

    Args:
        path: A checkpoint file or a sharded checkpoint's directory.
        verified: ``path`` was verified against its manifest just now, by rank 0 for every process:
            its files are not hashed again (they are still unpickled safely).

    Raises:
        CheckpointError: the file is missing, corrupt, truncated, would run code when unpickled,
            or was written by a newer format of trainwell.
    """
    import torch

    path = Path(path)
    if is_sharded_checkpoint(path):
        return _read_sharded(path, verified)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist or is not a file: give the path of a checkpoint file or of a run directory."
        )
    if not verified:
        verify(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = re.search(r"WeightsUnpickler error: ([^\n]*?\.)(\s|$)", str(error))
        raise CheckpointError(
            f"checkpoint '{path}' was refused: it holds objects that are not tensors or plain data, and unpickling them "
            "could run code; trainwell loads checkpoints only with weights_only=True"
            + (f" ({detail.group(1)})" if detail else "")
            + "."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated and cannot be read: {first_line(error)}"
        ) from error
    _check_version(path, checkpoint)
    return checkpoint


def _read_sharded(path: Path, verified: bool) -> dict[str, Any]:
    """A sharded checkpoint's contents, its sharded tensors as placeholders (:mod:`trainwell.files.sharded`)."""
    if not verified and verify(path) is None:
        raise CheckpointError(
            f"sharded checkpoint '{path}' has no manifest: it was never committed (its writing was interrupted). "
            "Resume from a committed checkpoint (resume='auto' picks the newest good one)."
        )
    checkpoint = read_rest(path)
    _check_version(path, checkpoint)
    return checkpoint


def _check_version(path: Path, checkpoint: Any) -> None:
    if isinstance(checkpoint, dict):
        version = checkpoint.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint '{path}' has format_version={version}, newer than this trainwell reads "
                f"({FORMAT_VERSION}): upgrade trainwell to load it."
            )


def load_checkpoint(
    path: str | Path, model: Any = None, optimizer: Any = None, *, strict: bool = True
) -> dict[str, Any]:
    """Load a checkpoint safely and restore ``model`` (and ``optimizer``) from it.

    Args:
        path: A checkpoint file, or a directory (a run directory or its ``checkpoints/``), in which
            case the newest committed checkpoint that verifies is loaded.
        model: An ``nn.Module`` to load ``model_state_dict`` into (a bare state dict saved with
            ``torch.save(model.state_dict())`` works too).
        optimizer: An optimizer to load ``optimizer_state_dict`` into.
        strict: Refuse a checkpoint whose parameter names or shapes differ from the model's.

    Returns:
        The checkpoint dictionary (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing, corrupt, truncated or unsafe to unpickle, or a
            directory holds no good checkpoint.
        CheckpointMismatchError: the checkpoint comes from a model with other parameters; the
            message names them.

    Example:
        >>> checkpoint = trainwell.load_checkpoint("runs/exp1", model)  # doctest: +SKIP
        >>> checkpoint["epoch"], checkpoint["val_loss"]  # doctest: +SKIP
        (12, 0.087)
    """
    path = Path(path)
    if path.is_dir() and not is_sharded_checkpoint(path):  # a run directory
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"'{path}' holds no committed checkpoint that verifies: give a checkpoint file instead."
            )
        path, checkpoint = found
    else:
        checkpoint = read_checkpoint(path)
    if isinstance(checkpoint, dict) and checkpoint.get("sharded") and (model is not None or optimizer is not None):
        raise CheckpointError(
            f"checkpoint '{path}' is sharded (written by strategy='fsdp'): its tensors are in pieces, one file per "
            "process. Load the model with trainwell.load_model(run_dir, model=...), or write a single-file copy with "
            "trainwell.distributed.shards.consolidate(path, 'model.pt') and load that."
        )
    if model is not None:
        state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        load_model_state(model, state, source=f"checkpoint '{path}'", strict=strict)
    if optimizer is not None:
        saved = checkpoint.get("optimizer_state_dict")
        if saved is None:
            raise CheckpointError(
                f"checkpoint '{path}' has no optimizer_state_dict: it was saved without an optimizer."
            )
        optimizer.load_state_dict(saved)
    return checkpoint


# ---------------------------------------------------------------------------------------- discovery


def latest_checkpoint(
    directory: str | Path, on_bad: Callable[[Manifest, CheckpointError], None] | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest committed checkpoint in ``directory`` that verifies and loads, with its contents.

    ``directory`` may be a run directory (its ``checkpoints/`` is searched) or a checkpoint
    directory. A checkpoint that fails verification is logged, reported to ``on_bad`` and skipped
    in favour of the next newest: a corrupted last checkpoint costs the work since the one before,
    never the run.

    Returns:
        ``(path, checkpoint)``, or None when no committed checkpoint loads.
    """
    directory = checkpoint_directory(directory)
    for manifest in committed_checkpoints(directory):
        try:
            return manifest.path, read_checkpoint(manifest.path)
        except CheckpointError as error:
            logger.warning("Skipping checkpoint %s: %s", manifest.path.name, error)
            if on_bad is not None:
                on_bad(manifest, error)
    return None


def versions() -> dict[str, str]:
    """The versions that wrote a checkpoint: trainwell, torch, Python."""
    import platform

    import torch

    from trainwell.version import __version__

    return {"trainwell": __version__, "torch": str(torch.__version__), "python": platform.python_version()}
