"""Checkpoint manifests: what commits a checkpoint, and how the committed ones are found, set aside and pruned.

A checkpoint counts only once its manifest (``<name>.manifest.json``, beside it) is written: the
file's SHA-256 and size, the step and epoch it was taken at, its kind, whether the state was
healthy, and its ``val_loss``. Discovery therefore never sees a half-written checkpoint, and
"latest" means the highest committed step, never the newest modification time.

The stable names ``last.pt`` and ``best.pt`` are *aliases*: the same bytes as a committed
checkpoint (a hard link, or a copy where the file system has none), committed by their own
manifest, which names the checkpoint they stand for (``alias_of``). Discovery and pruning skip
them: they are pointers for people and for ``load_model``, never a checkpoint of their own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from trainwell.exceptions import CheckpointError
from trainwell.files.atomic import fsync_directory

logger = logging.getLogger("trainwell")

MANIFEST_SUFFIX = ".manifest.json"
# The layout of the manifest itself (a checkpoint's contents have their own format_version).
MANIFEST_FORMAT = 1


class FileEntry(BaseModel):
    """One committed file in a manifest: its SHA-256 (hex) and size."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class ManifestSchema(BaseModel):
    """What a manifest file must hold (JSON): anything else, or any value of the wrong type, commits nothing.

    Example:
        >>> ManifestSchema.model_validate_json('{"step": 12, "files": {}}').step
        12
        >>> from pydantic import ValidationError
        >>> try:
        ...     ManifestSchema.model_validate_json('{"step": "12", "files": {}}')
        ... except ValidationError as error:
        ...     print(error.errors()[0]["msg"])
        Input should be a valid integer
    """

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    format_version: int = Field(MANIFEST_FORMAT, ge=1)
    kind: str = "manual"
    step: Optional[int] = Field(None, ge=0)
    epoch: Optional[int] = Field(None, ge=0)
    val_loss: Optional[float] = Field(None, allow_inf_nan=False)
    healthy: bool = True
    monitor: Optional[str] = None
    monitored: Optional[float] = Field(None, allow_inf_nan=False)
    alias_of: Optional[str] = None
    files: dict[str, FileEntry]


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint's manifest says about it.

    Attributes:
        path: The checkpoint file.
        sha256: Its SHA-256, hex.
        size: Its size in bytes.
        step: Optimizer steps taken when it was written (None when saved without one).
        epoch: Epochs completed when it was written.
        val_loss: The validation loss of the last completed epoch, when there was one.
        kind: ``"epoch"`` (end of an epoch), ``"step"`` (every N steps), ``"interrupt"`` (on a
            signal, or before a bad batch ends the run), or ``"manual"`` (:func:`save_checkpoint`).
        healthy: Whether no step of its epoch had gone bad when it was written (a state worth rolling back to).
        monitor: The run's monitored metric (``val_loss``, ``val_accuracy`` ...), when it had one.
        monitored: That metric's value in the last completed epoch.
        alias_of: For ``last.pt``/``best.pt``, the name of the checkpoint they are a copy of; else None.
    """

    path: Path
    sha256: str
    size: int
    step: int | None = None
    epoch: int | None = None
    val_loss: float | None = None
    kind: str = "manual"
    healthy: bool = True
    monitor: str | None = None
    monitored: float | None = None
    alias_of: str | None = None

    def value(self, metric: str) -> float | None:
        """The value of ``metric`` recorded with the checkpoint (``val_loss`` is always recorded), or None."""
        if metric == self.monitor:
            return self.monitored
        return self.val_loss if metric == "val_loss" else None

    @property
    def order(self) -> tuple[int, int]:
        """How recent it is: by step, then by completed epochs (an epoch's end follows its last step)."""
        return (self.step if self.step is not None else -1, self.epoch if self.epoch is not None else -1)


def manifest_path(path: Path) -> Path:
    """Where the manifest of checkpoint ``path`` lives: ``step-12.pt`` -> ``step-12.manifest.json``."""
    path = Path(path)
    return path.with_name(path.stem + MANIFEST_SUFFIX)


def manifest_text(
    path: Path,
    digest: str,
    size: int,
    *,
    step: int | None,
    epoch: int | None,
    val_loss: float | None,
    kind: str,
    healthy: bool,
    monitor: str | None = None,
    monitored: float | None = None,
    alias_of: str | None = None,
) -> bytes:
    """The manifest that commits checkpoint ``path`` (its SHA-256 ``digest`` and ``size``), as JSON bytes."""
    manifest = {
        "format_version": MANIFEST_FORMAT,
        "kind": kind,
        "step": step,
        "epoch": epoch,
        "val_loss": _finite_or_none(val_loss),
        "healthy": healthy,
        "monitor": monitor,
        "monitored": _finite_or_none(monitored),
        "alias_of": alias_of,
        "files": {path.name: {"sha256": digest, "bytes": size}},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return json.dumps(manifest, indent=1).encode("utf-8")


def read_manifest(path: Path) -> Manifest | None:
    """The manifest of checkpoint ``path``, or None when it has none (not committed).

    Raises:
        CheckpointError: the manifest exists but is unreadable or malformed (naming the manifest
            and what is wrong), so the checkpoint cannot be verified.
    """
    manifest_file = manifest_path(path)
    try:
        manifest = _manifests_in(manifest_file).get(Path(path).name)
    except FileNotFoundError:
        return None
    if manifest is None:
        raise CheckpointError(
            f"the manifest '{manifest_file}' of checkpoint '{path}' does not list {Path(path).name}: the checkpoint "
            "cannot be verified. Resume from another checkpoint."
        )
    return manifest


def committed_checkpoints(directory: str | Path) -> list[Manifest]:
    """The committed checkpoints in ``directory``, newest (highest step) first; aliases (``last.pt``,
    ``best.pt``) are not checkpoints of their own and are left out. Files are not verified here.

    A manifest that is unreadable or malformed (wrong types, missing fields) commits nothing: its
    checkpoint counts as uncommitted, and a warning names the manifest and what is wrong.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    manifests = []
    for manifest_file in directory.glob("*" + MANIFEST_SUFFIX):
        stem = manifest_file.name[: -len(MANIFEST_SUFFIX)]
        try:
            listed = _manifests_in(manifest_file)
        except FileNotFoundError:  # pruned meanwhile
            continue
        except CheckpointError as error:
            logger.warning("Ignoring checkpoint manifest %s (its checkpoint counts as uncommitted): %s", manifest_file, error)
            continue
        manifests.extend(
            manifest for name, manifest in listed.items() if Path(name).stem == stem and manifest.alias_of is None
        )
    return sorted(manifests, key=lambda m: m.order, reverse=True)


def _manifests_in(manifest_file: Path) -> dict[str, Manifest]:
    """What ``manifest_file`` commits, by file name, checked against the manifest's schema.

    Raises:
        CheckpointError: naming the file and the first problems (not JSON, wrong types, missing fields).
        FileNotFoundError: there is no such manifest.
    """
    from pydantic import ValidationError

    source = f"the manifest '{manifest_file}'"
    try:
        data = ManifestSchema.model_validate_json(manifest_file.read_bytes())
    except FileNotFoundError:
        raise
    except OSError as error:
        raise CheckpointError(f"{source} cannot be read ({error}): its checkpoint cannot be verified.") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'the file'}: {problem['msg']}"
            for problem in error.errors()[:3]
        )
        raise CheckpointError(
            f"{source} is malformed ({problems}): its checkpoint cannot be verified. Resume from another checkpoint."
        ) from None
    return {
        name: Manifest(
            path=manifest_file.parent / name,
            sha256=entry.sha256,
            size=entry.bytes,
            step=data.step,
            epoch=data.epoch,
            val_loss=data.val_loss,
            kind=data.kind,
            healthy=data.healthy,
            monitor=data.monitor,
            monitored=data.monitored,
            alias_of=data.alias_of,
        )
        for name, entry in data.files.items()
    }


def checkpoint_directory(path: str | Path) -> Path:
    """``path/checkpoints`` when ``path`` is a run directory that has one, else ``path``."""
    path = Path(path)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def set_aside(manifest: Manifest, suffix: str) -> None:
    """Rename a checkpoint and its manifest out of discovery's way, keeping them for inspection."""
    for file in (manifest_path(manifest.path), manifest.path):
        if file.exists():
            os.replace(file, file.with_name(file.name + suffix))
    fsync_directory(manifest.path.parent)


def epoch_checkpoints(manifests: list[Manifest]) -> list[Manifest]:
    """The end-of-epoch checkpoints among ``manifests``, oldest first: what a ranking by a validation metric compares."""
    return sorted((m for m in manifests if m.kind == "epoch"), key=lambda m: m.order)


def prune(
    directory: Path,
    keep_last: int,
    keep_best: int,
    is_ours: Callable[[Path], bool],
    best_first: Callable[[list[Manifest]], list[Manifest]],
) -> list[Path]:
    """Delete committed checkpoints beyond the ``keep_last`` newest and the ``keep_best`` best.

    Also removes this writer's leftovers (temporary files, files whose manifest never got
    written). Each manifest goes before its file. Only files for which ``is_ours`` holds are
    touched.

    Args:
        directory: The checkpoint directory.
        keep_last: How many of the newest to keep.
        keep_best: How many of the best end-of-epoch checkpoints to keep as well.
        is_ours: Which files this writer owns.
        best_first: Ranks end-of-epoch checkpoints (given oldest first), best first
            (:meth:`trainwell.observe.monitor.Monitor.ranked`).

    Returns:
        The deleted checkpoint files.
    """
    manifests = [m for m in committed_checkpoints(directory) if is_ours(m.path)]
    keep = {m.path for m in manifests[:keep_last]}
    keep |= {m.path for m in best_first(epoch_checkpoints(manifests))[:keep_best]}
    deleted = []
    for manifest in manifests:
        if manifest.path not in keep:
            manifest_path(manifest.path).unlink(missing_ok=True)
            remove(manifest.path)
            deleted.append(manifest.path)
    committed = {m.path for m in manifests}
    for leftover in directory.iterdir():
        temporary = leftover.name.startswith(".") and ".tmp-" in leftover.name
        orphan = is_ours(leftover) and leftover not in committed and not manifest_path(leftover).exists()
        if temporary or orphan:
            remove(leftover)
    return deleted


def remove(path: Path) -> None:
    """Delete a checkpoint: a file, or the directory of a sharded one."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _finite_or_none(value: float | None) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
