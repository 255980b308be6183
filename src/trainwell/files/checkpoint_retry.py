"""Checkpoint writes retried while the failure is transient, and the CheckpointError that says why they failed.

A failure while a checkpoint is written (an OSError, or the RuntimeError of torch's zip writer
around one) is classified by :mod:`trainwell.files.storage`: a full disk and other transient
errors are retried with exponential backoff (:mod:`trainwell.files.retry`), a permission or
read-only file system is not; what remains ends as a CheckpointError naming the file, the free
space, the checkpoint's size and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainwell.exceptions import CheckpointError
from trainwell.files.retry import RetryPolicy, retry_call
from trainwell.files.storage import DISK_FULL, PERMISSION, WriteFailure, classify, format_bytes


class _WriteFailed(Exception):
    """Carries a classified write failure through the retry loop (retried unless permanent)."""

    def __init__(self, failure: WriteFailure) -> None:
        super().__init__(failure.reason())
        self.failure = failure


class _Transient(_WriteFailed):
    """A failure worth retrying."""


def with_retry(
    operation: Callable[[], Any],
    policy: RetryPolicy,
    sleep: Callable[[float], Any],
    path: Path,
    what: str = "write",
    size: Callable[[], int | None] = lambda: None,
) -> Any:
    """``operation()``, retried on transient failures, any failure ending as a CheckpointError that says what to do.

    Every exception counts, not only OSError: ``torch.save``'s zip writer reports a full disk as a
    RuntimeError. :func:`trainwell.files.storage.classify` finds the cause (disk full, permission,
    other); a permission is not retried.
    """

    def attempt() -> Any:
        try:
            return operation()
        except Exception as error:
            failure = classify(error, path.parent)
            if failure.permanent:
                raise _WriteFailed(failure) from error
            # Retried: the log names the cause, not the serialiser's words for it.
            raise _Transient(failure) from error

    try:
        return retry_call(
            attempt, policy=policy, retry_on=(_Transient,), sleep=sleep, describe=f"Checkpoint {what} of '{path}'"
        )
    except _WriteFailed as failed:  # a permanent failure, or a transient one that outlasted the retries
        raise CheckpointError(_failure_message(failed.failure, path, what, policy.attempts, size)) from failed.__cause__


def _failure_message(
    failure: WriteFailure, path: Path, what: str, attempts: int, size: Callable[[], int | None]
) -> str:
    directory = path.parent
    resume = "then resume with resume='auto' (--resume auto); earlier checkpoints are intact."
    where = f"{failure.free()} on the file system of '{directory}'"
    if failure.kind == PERMISSION:
        return (
            f"could not {what} checkpoint '{path}': {failure.reason()} ({where}). This is not transient, so it was "
            f"not retried. Make the directory '{directory}' writable (or choose another run_dir), {resume}"
        )
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if failure.kind == DISK_FULL:
        needed = size()
        needs = f"; the checkpoint needs {format_bytes(needed)}" if needed else ""
        return (
            f"could not {what} checkpoint '{path}'{tries}: {failure.reason()}: the disk is full ({where}{needs}). "
            f"Free disk space there (or set run_dir on a larger disk, or keep fewer checkpoints with "
            f"checkpoint_keep_last=1, checkpoint_keep_best=0), {resume}"
        )
    return (
        f"could not {what} checkpoint '{path}'{tries}: {failure.reason()} ({where}). Check the file system "
        f"(a network mount that went away, a failing disk) or choose another run_dir, {resume}"
    )


def serialised_size(checkpoint: Mapping[str, Any]) -> int | None:
    """How many bytes ``torch.save`` writes for ``checkpoint`` (serialised into a counter, nothing stored)."""
    import torch

    class Counter:
        size = 0

        def write(self, data: bytes) -> int:
            self.size += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    counter = Counter()
    try:
        torch.save(dict(checkpoint), counter)
    except Exception:  # noqa: BLE001 - only a message's detail depends on it
        return None
    return counter.size


