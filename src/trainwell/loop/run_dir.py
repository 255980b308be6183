"""A run's hold on its run directory: checked first, created last, locked for the run's life.

``Trainer.fit`` trains inside :func:`run_directory`. Check, then create: a directory that would
mix two runs is refused before any work, and nothing is created until every part of the run is
built and checked (the model against the data, the precision on the device, ...), so that a
refusal leaves no debris. Creating it takes the directory's lock first (one process at a time
writes a run directory; :mod:`trainwell.files.lock`), then writes config.yaml and model.txt and
opens train.log, which begins with the lines logged before it existed. A directory that exists
already (a resumed run) is locked before its checkpoints are picked. Everything is released on
any exit. Under torchrun rank 0 alone holds the lock and writes the directory; an error there
ends every process alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainwell.config import TrainConfig
from trainwell.distributed.session import Session, is_primary, on_primary, start_in
from trainwell.files.atomic import write_text
from trainwell.files.lock import RunDirLock
from trainwell.files.rundir import RunPaths, check_run_dir, prepare_run_dir
from trainwell.observe.logs import captured, drop_captured, log_to_file
from trainwell.reliability.resume import continues_in

Checkpoint = tuple[Path, dict[str, Any]]


@contextlib.contextmanager
def run_directory(
    config: TrainConfig, session: Session | None, resume: Any, signals: contextlib.AbstractContextManager[Any]
) -> Iterator[tuple[Checkpoint | None, Callable[[dict[str, Any], str], None]]]:
    """Hold ``config.run_dir`` while the block trains; yield the checkpoint to resume from and ``create``.

    ``create(options, model_summary)`` creates the directory once the run is checked: the lock,
    config.yaml (``options``, the resolved config), model.txt and train.log.

    Args:
        config: The run's config (``run_dir``, ``run_dir_wait_s``, ``save_checkpoints``).
        session: Under torchrun, this process's session; None in one process.
        resume: What ``fit`` was asked to resume from.
        signals: The signal catcher, entered where there are checkpoints to write.

    Raises:
        RunDirLockedError: another process holds the run directory.
        StorageError: the run directory cannot be written.
        ConfigError: it holds another run, or ``resume`` is invalid.
        CheckpointError: the checkpoint to resume from is corrupt.
    """
    if config.run_dir is None:
        yield start_in(session, resume, None), lambda options, model_summary: None
        return
    run_dir = Path(config.run_dir)
    resuming = continues_in(resume, run_dir)
    on_primary(session, check_run_dir, run_dir, resuming=resuming)
    lock = RunDirLock(run_dir, wait_s=config.run_dir_wait_s)
    caught = signals if config.save_checkpoints else contextlib.nullcontext()
    with contextlib.ExitStack() as held, captured(), caught:
        held.callback(lock.release)
        # An existing directory is held before its checkpoints are picked (and newer ones set aside).
        on_primary(session, lambda: lock.acquire() if run_dir.is_dir() else None)

        def create(options: dict[str, Any], model_summary: str) -> None:
            on_primary(session, lambda: None if lock.held else lock.acquire())
            on_primary(session, prepare_run_dir, run_dir, options, resuming=resuming)
            if is_primary(session):
                paths = RunPaths(run_dir)
                held.enter_context(log_to_file(paths.log))
                write_text(paths.model_summary, model_summary + "\n")
            else:
                drop_captured()  # rank 0 alone writes train.log

        yield start_in(session, resume, run_dir), create
