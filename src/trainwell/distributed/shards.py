"""Sharded checkpoints, written and read by every process together with torch.distributed.checkpoint.

Under ``strategy="fsdp"`` each process holds a piece of every sharded tensor (weights, optimizer
moments, early stopping's best weights), so no process can write the whole checkpoint. What a
checkpoint holds is still :meth:`trainwell.Trainer.checkpoint`; here it is cut in two
(:func:`trainwell.files.sharded.split`): the sharded tensors, which every process writes its
pieces of through ``torch.distributed.checkpoint`` (DCP), and the rest, which rank 0 writes as
``trainer.pt`` with a placeholder for each sharded tensor (its global shape, dtype and placement).
Rank 0 then commits the directory with one manifest, written last (the layout and the commit:
:mod:`trainwell.files.sharded`).

Reading fills the placeholders: with the pieces of this process under FSDP (DCP reshards when
the number of processes changed), or with whole tensors in one process or under DDP, which is
how :func:`consolidate` and :func:`trainwell.load_model` read a sharded run.

DCP's own index (``.metadata``) is a pickle: it is unpickled only after a restricted pass that
admits DCP's metadata classes, ``torch.Size`` and dtypes, so a crafted checkpoint cannot run code,
as with single-file checkpoints (``weights_only=True``).
"""

from __future__ import annotations

import os
import pickle
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainwell.distributed.primary import on_primary
from trainwell.exceptions import CheckpointError
from trainwell.files import sharded as layout
from trainwell.files.checkpoint import read_checkpoint, write_checkpoint
from trainwell.files.retry import DEFAULT_POLICY, RetryPolicy
from trainwell.files.storage import first_line


def is_sharded(value: Any) -> bool:
    """Whether ``value`` is a sharded tensor (a DTensor)."""
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def write(
    session: Any,
    path: Path,
    checkpoint: dict[str, Any],
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
    """Write ``checkpoint`` as the sharded checkpoint ``path`` (a ``.dcp`` directory), in every process.

    Every process writes its pieces (each file fsynced) into a temporary directory and hashes
    them; rank 0 writes the rest, renames the directory into place and commits it with its
    manifest. Every process returns once the checkpoint is committed.

    Args:
        session: This process's session (every process calls this together).
        path: The checkpoint directory to write (``.../step-000000012.dcp``).
        checkpoint: What the checkpoint holds (:meth:`trainwell.Trainer.checkpoint`).
        step, epoch, val_loss, kind, healthy, monitor, monitored: The manifest's fields (as
            :func:`trainwell.files.checkpoint.write_checkpoint`'s): ``monitor`` and ``monitored`` rank it
            as a best checkpoint by the run's monitor.
        retry, sleep: Attempts and backoff for rank 0's transient write errors (a full disk), and the
            wait between them, as for a single-file checkpoint.

    Returns:
        ``path``, committed.

    Raises:
        CheckpointError: in every process, when a process could not write its pieces or rank 0
            could not commit (after its retries, naming the free space and the fix); earlier
            checkpoints are intact.
        TypeError: the checkpoint holds something other than tensors and plain data.
    """
    from torch.distributed.checkpoint import FileSystemWriter, save
    from torch.distributed.checkpoint.api import CheckpointException

    rest, pieces = layout.split(checkpoint, is_sharded, _describe)
    rest["sharded"] = True
    temporary = layout.temporary_directory(path, session.broadcast(os.getpid()))
    on_primary(session, _fresh_directory, temporary)
    try:
        save(pieces, storage_writer=FileSystemWriter(temporary, sync_files=True))
        # Each process hashes the files it wrote (DCP names them after the rank: __<rank>_<n>.distcp).
        mine = {file.name: layout.digest(file) for file in temporary.glob(f"__{session.rank}_*.distcp")}
    except (CheckpointException, OSError) as error:
        raise CheckpointError(
            f"could not write the pieces of sharded checkpoint '{path}': {_first_line(error)}. Earlier checkpoints "
            "are intact; check the run directory's file system (every process must see it)."
        ) from None
    everyone = session.gather(mine)

    def commit() -> str:
        files = {name: entry for written in everyone for name, entry in written.items()}
        try:
            files[".metadata"] = layout.digest(temporary / ".metadata")
        except OSError as error:
            raise CheckpointError(
                f"could not commit sharded checkpoint '{path}': {error}. Earlier checkpoints are intact."
            ) from None
        # Rank 0's writes are retried and their failures explained as a single file's are (torch.save
        # reports a full disk as a RuntimeError).
        files[layout.REST] = layout.write_rest(temporary, rest, path=path, retry=retry, sleep=sleep)
        fields = {"step": step, "epoch": epoch, "val_loss": val_loss, "kind": kind, "healthy": healthy}
        committed = layout.commit(
            temporary, path, files, **fields, monitor=monitor, monitored=monitored, retry=retry, sleep=sleep
        )
        return str(committed)

    return Path(on_primary(session, commit))


def _fresh_directory(directory: Path) -> None:
    layout.remove(directory)
    directory.mkdir(parents=True)


def _describe(tensor: Any) -> dict[str, Any]:
    """A sharded tensor as plain data: enough to make a tensor to load it into."""
    placements = []
    for placement in tensor.placements:
        if placement.is_shard():
            placements.append(f"S{placement.dim}")
        elif placement.is_replicate():
            placements.append("R")
        else:
            raise TypeError(
                f"a checkpoint cannot hold a DTensor with placement {placement} (a pending reduction): only sharded or "
                "replicated tensors."
            )
    return {"shape": list(tensor.shape), "dtype": tensor.dtype, "placements": placements}


# ------------------------------------------------------------------------- reading


def load_pieces(path: Path, checkpoint: dict[str, Any], session: Any) -> dict[str, Any]:
    """``checkpoint`` (a sharded one, as read by ``read_checkpoint``) with its placeholders filled.

    Under FSDP, every process reads its own pieces of each sharded tensor onto its device; under
    DDP or in one process, the whole tensors, on the CPU. Every process of a session calls this
    together. A single-file checkpoint is returned as it is.

    Raises:
        CheckpointError: the pieces cannot be read (missing, or of other shapes than recorded).
    """
    from torch.distributed.checkpoint import load

    holders = {holder[layout.PLACEHOLDER]: holder for holder in layout.placeholders(checkpoint)}
    if not holders:
        return checkpoint
    mesh = session.mesh if session is not None else None
    tensors = {key: _template(holder, mesh) for key, holder in holders.items()}
    try:
        with warnings.catch_warnings():  # in one process DCP warns that it reads in one process
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            load(tensors, storage_reader=_reader(path), no_dist=session is None)
    except BaseException as error:  # DCP reports every process's failure as a CheckpointException (a BaseException)
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise CheckpointError(
            f"could not read the pieces of sharded checkpoint '{path}': {_first_line(error)}"
        ) from None
    return layout.fill(checkpoint, tensors)


def read(path: Path, session: Any) -> dict[str, Any]:
    """A checkpoint file or sharded checkpoint, read whole (every process of a session calls this together).

    Raises:
        CheckpointError: as :func:`trainwell.files.checkpoint.read_checkpoint` and :func:`load_pieces`.
    """
    return load_pieces(path, read_checkpoint(path), session)


def consolidate(path: str | Path, destination: str | Path) -> Path:
    """Write a sharded checkpoint as one ordinary checkpoint file, in one process (no torchrun needed).

    The file holds the whole tensors, so ``trainwell.load_checkpoint``, ``torch.load`` readers
    of ``model_state_dict``, and training with ``strategy="ddp"`` or in one process read it.

    Args:
        path: A committed sharded checkpoint (a ``.dcp`` directory in a run's ``checkpoints/``).
        destination: The checkpoint file to write (committed by its manifest).

    Returns:
        ``destination``.

    Raises:
        CheckpointError: ``path`` is not a committed, intact sharded checkpoint.

    Example:
        >>> consolidate("runs/big/checkpoints/epoch-0003-step-000000750.dcp", "model.pt")  # doctest: +SKIP
    """
    path = Path(path)
    if not layout.is_sharded_checkpoint(path):
        raise CheckpointError(f"'{path}' is not a sharded checkpoint (a .dcp directory): it needs no consolidation.")
    checkpoint = read(path, None)
    checkpoint.pop("sharded", None)
    return write_checkpoint(
        Path(destination),
        checkpoint,
        step=checkpoint.get("step"),
        epoch=checkpoint.get("epoch"),
        val_loss=checkpoint.get("val_loss"),
    )


def _template(holder: dict[str, Any], mesh: Any) -> torch.Tensor:
    """An empty tensor to read a sharded tensor into: this process's piece under FSDP, else the whole tensor."""
    shape, dtype = holder["shape"], holder["dtype"]
    if mesh is None:
        return torch.empty(shape, dtype=dtype)
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor import empty as empty_dtensor

    placements = [Replicate() if p == "R" else Shard(int(p[1:])) for p in holder["placements"]]
    return empty_dtensor(shape, dtype=dtype, device_mesh=mesh, placements=placements)


def _first_line(error: BaseException) -> str:
    """What went wrong, in one line (for DCP's CheckpointException, the first failing process's error)."""
    failures = getattr(error, "failures", None)
    if failures:
        rank, (cause, _) = next(iter(failures.items()))
        return f"rank {rank}: {_first_line(cause)}"
    return first_line(error)


class _MetadataUnpickler(pickle.Unpickler):
    """Admits what DCP's ``.metadata`` holds (its metadata classes, sizes, dtypes, paths), nothing that could run code."""

    _ALLOWED = frozenset(
        {
            ("torch", "Size"),
            ("torch.serialization", "_get_layout"),
            ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
            ("pathlib", "PosixPath"),
            ("pathlib", "PurePosixPath"),
            ("pathlib", "WindowsPath"),
            ("collections", "OrderedDict"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch.distributed.checkpoint.metadata" and not name.startswith("__"):
            from torch.distributed.checkpoint import metadata

            found = getattr(metadata, name, None)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint's .metadata")


def _reader(path: Path) -> Any:
    """DCP's file reader for ``path``, whose ``.metadata`` passes :class:`_MetadataUnpickler` before DCP unpickles it."""
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            with open(Path(self.path) / ".metadata", "rb") as file:
                try:
                    _MetadataUnpickler(file).load()
                except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
                    raise CheckpointError(f"the sharded checkpoint's .metadata was refused: {error}.") from None
            return super().read_metadata(*args, **kwargs)

    return SafeReader(path)
