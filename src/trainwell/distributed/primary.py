"""What rank 0 does for every process: one decision, shared, and its errors raised everywhere.

Rank 0 alone creates the run directory and picks the checkpoint to resume from; the others
receive its result, or its error, so that a failure there ends every process alike instead of
leaving the others waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainwell.exceptions import TrainwellError


def on_primary(session: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` on rank 0 only; its result (or its error) in every process.

    In one process it simply calls ``function``. Used for what must happen once (creating the
    run directory), so that an error there ends every process alike instead of leaving the
    others waiting.
    """
    if session is None:
        return function(*args, **kwargs)
    outcome: tuple[BaseException | None, Any] = (None, None)
    if session.is_primary:
        try:
            outcome = (None, function(*args, **kwargs))
        except Exception as error:  # shared with the other processes, then raised here too
            outcome = (_portable(error), None)
            session.broadcast(outcome)
            raise
    error, result = session.broadcast(outcome)
    if error is not None:
        raise error
    return result


def start_in(session: Any, resume: Any, run_dir: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from, picked by rank 0 and loaded by every process.

    As :func:`trainwell.reliability.resume.start_in` for a run directory, :func:`trainwell.reliability.resume.locate`
    without one; in one process exactly that.

    Raises:
        CheckpointError, ConfigError: as those, in every process; ConfigError also for a
            checkpoint written inside an epoch by another number of processes.
    """
    from trainwell.distributed import shards
    from trainwell.files.checkpoint import read_checkpoint
    from trainwell.reliability import resume as resuming

    def pick() -> tuple[Path, dict[str, Any]] | None:
        return resuming.start_in(resume, run_dir) if run_dir is not None else resuming.locate(resume, None)

    if session is None:
        found = pick()
        return found if found is None else (found[0], shards.load_pieces(found[0], found[1], None))
    found = None

    def pick_path() -> str | None:
        nonlocal found
        found = pick()
        return str(found[0]) if found is not None else None

    path = on_primary(session, pick_path)
    if path is None:
        return None
    if found is None:  # rank 0 verified it (a failure there ended every process): not hashed again here
        found = (Path(path), read_checkpoint(Path(path), verified=True))
    session.check_resumable(*found)
    return found[0], shards.load_pieces(found[0], found[1], session)


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to be raised in the other processes too), else a TrainwellError saying it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure means: send its text instead
        return TrainwellError(f"rank 0 failed with {type(error).__name__}: {error}")


def is_primary(session: Any) -> bool:
    """Whether this process writes the run's files: the only one, or rank 0."""
    return session is None or session.is_primary
