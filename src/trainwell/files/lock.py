"""The run directory's lock: one process at a time writes a run directory.

A scheduler that starts the same job twice (two ``trainwell train --resume auto --out R``)
would otherwise run it twice into one directory: every epoch written twice to metrics.jsonl,
one process's pruning deleting the other's checkpoint in progress. The lock is an operating
system lock (``fcntl.flock``) on ``<run_dir>/.lock``, taken before anything is written and held
for the run's life:

- it is released on any exit, and the kernel releases it when the holder dies, even by
  SIGKILL: a crashed run never blocks the next one (the file stays; only the lock matters);
- a second process is refused with the holder's pid, host and start time (written into the
  file by the holder), or waits for it, as ``run_dir_wait_s`` says.

Where the file system offers no locks (some network mounts) or the platform has no
``fcntl`` (Windows), a warning says that concurrent runs are not prevented, and training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from trainwell.exceptions import RunDirLockedError
from trainwell.files.rundir import RunPaths
from trainwell.files.storage import writing

logger = logging.getLogger("trainwell")


class RunDirLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` to :meth:`release`.

    Args:
        run_dir: The run directory (created when missing).
        wait_s: How long to wait for another holder: 0 refuses at once, None waits until it is released.
        poll_s: How often to try again while waiting.

    Raises (from :meth:`acquire`):
        RunDirLockedError: another process holds the lock (and did not release it within ``wait_s``).
        StorageError: the directory or its lock file cannot be created (read-only, full, permission).

    Example:
        >>> import tempfile
        >>> with RunDirLock(Path(tempfile.mkdtemp())) as lock:
        ...     lock.held
        True
    """

    def __init__(self, run_dir: Path, wait_s: float | None = 0.0, poll_s: float = 0.5) -> None:
        self.path = RunPaths(Path(run_dir)).lock
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_s`` for another holder; write this process's pid and host into it."""
        try:
            import fcntl
        except ImportError:
            logger.warning(
                "Cannot lock %s on this platform (no fcntl): concurrent runs in it are not prevented.", self.path.parent
            )
            return
        with writing(self.path, "create the lock file"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        waiting_logged = False
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise RunDirLockedError(self._refusal()) from None
                    if not waiting_logged:
                        logger.warning(
                            "%s; waiting for it to end (run_dir_wait_s=%s).", self._holder_text(), self.wait_s
                        )
                        waiting_logged = True
                    time.sleep(
                        self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic()))
                    )
                except OSError as error:
                    logger.warning(
                        "Cannot lock %s (%s): concurrent runs in this directory are not prevented.", self.path, error
                    )
                    os.close(descriptor)
                    return
            self._descriptor = descriptor
            self._write_holder()
        except BaseException:
            if self._descriptor is None:
                os.close(descriptor)
            raise

    def release(self) -> None:
        """Let go of the lock (nothing happens when it is not held)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            os.ftruncate(descriptor, 0)
        except OSError:
            pass
        os.close(descriptor)  # closing the descriptor releases the flock

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def _write_holder(self) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        data = (json.dumps(holder) + "\n").encode("utf-8")
        try:
            os.ftruncate(self._descriptor, 0)
            os.pwrite(self._descriptor, data, 0)
        except OSError as error:  # the lock holds anyway; only the refusal message loses the details
            logger.debug("Could not record the holder in %s: %s", self.path, error)

    def holder(self) -> dict[str, Any]:
        """The holder's pid, host and start time as it recorded them ({} when unknown, e.g. still being written)."""
        for _ in range(3):
            try:
                holder = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(holder, dict):
                    return holder
            except (OSError, ValueError):
                pass
            time.sleep(0.05)  # the holder may have the lock but not yet its details written
        return {}

    def _holder_text(self) -> str:
        holder = self.holder()
        if not holder:
            return f"run_dir '{self.path.parent}' is in use by another process (its lock {self.path} is held)"
        return (
            f"run_dir '{self.path.parent}' is in use by process {holder.get('pid')} on host {holder.get('host')!r} "
            f"(since {holder.get('started')})"
        )

    def _refusal(self) -> str:
        waited = f"; waited {self.wait_s:g} s" if self.wait_s else ""
        return (
            f"{self._holder_text()}{waited}. Two processes must not write one run directory: if that run is this "
            "same job started twice, let it finish; otherwise choose another run_dir (--out). To wait for it "
            "instead, set run_dir_wait_s (seconds; None waits until it ends)."
        )
