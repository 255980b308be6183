"""Elastic restarts: when torchrun starts the processes again, training goes on from the newest checkpoint.

``torchrun --max-restarts=N`` watches its processes; when one dies (a machine lost, a process
killed for memory), it stops the others and starts the whole group again, up to N times, telling
each process which attempt it is in ``TORCHELASTIC_RESTART_COUNT``. A restarted process resumes
from the newest committed checkpoint of its run directory without being asked (``resume="auto"``),
records a ``restart`` event, and ends with the weights the run would have had without the failure
(checkpoints hold the whole state: :mod:`trainwell.reliability.resume`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from trainwell.files.manifest import committed_checkpoints
from trainwell.files.rundir import RunPaths
from trainwell.reliability.resume import continues_in

logger = logging.getLogger("trainwell")


def restart_count(env: Any = None) -> int:
    """How many times torchrun has restarted this group of processes (0: the first attempt, or no torchrun).

    Example:
        >>> restart_count({"TORCHELASTIC_RESTART_COUNT": "2"})
        2
        >>> restart_count({})
        0
    """
    text = (os.environ if env is None else env).get("TORCHELASTIC_RESTART_COUNT", "0")
    return int(text) if text.isdigit() else 0


def group_restarts(session: Any) -> int:
    """How many times torchrun restarted the group, as every process of ``session`` agrees (None: this process's count).

    Each machine's torchrun counts only its own restarts: when a process on one machine fails,
    the others are restarted without counting. The group was restarted when any process says so.
    """
    if session is None:
        return restart_count()
    if session.restarts is None:
        session.restarts = session.any(restart_count())[0]
    return session.restarts


def resume_after_restart(resume: Any, run_dir: Path | None, session: Any = None) -> Any:
    """What to resume from: after a restart, the newest committed checkpoint of ``run_dir`` (``"auto"``); else ``resume``.

    A restart goes on with the run directory's own checkpoints, whatever ``resume`` says, once the
    run has committed one; until then a ``resume`` naming another run's checkpoint still applies.
    Every process of ``session`` calls this together.

    Example:
        >>> resume_after_restart(None, Path("runs/exp1"))  # not restarted
    """
    restarts = group_restarts(session)
    if not restarts or resume == "auto":
        return resume
    if run_dir is None:
        logger.warning(
            "torchrun restarted the processes (restart %d), but there is no run_dir to resume from: training starts "
            "over. Set run_dir (with checkpoint_every_steps) so that a restart goes on where the run stopped.",
            restarts,
        )
        return resume
    run_dir = Path(run_dir)
    if resume is None or continues_in(resume, run_dir) or committed_checkpoints(RunPaths(run_dir).checkpoints):
        return "auto"
    return resume


def shared_store_warning(env: Any = None) -> str | None:
    """Why restarts may fail to reconnect the processes with this launch, or None.

    torchrun >= 2.4 lends the processes its own store by default, and keeps in it the addresses
    the previous attempt published: a restarted process may read one and fail to connect
    (pytorch/pytorch#135712). ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives every attempt a store of its own.

    Example:
        >>> shared_store_warning({"TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"})[:25]
        'torchrun --max-restarts=3'
    """
    env = os.environ if env is None else env
    restarts = env.get("TORCHELASTIC_MAX_RESTARTS", "0")
    if not restarts.isdigit() or int(restarts) == 0 or env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return (
        f"torchrun --max-restarts={restarts} shares its store with the processes: after a restart, a process may "
        "read an address the failed attempt left there and fail to connect (pytorch/pytorch#135712). Launch with "
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in the environment of torchrun, so that every attempt gets a store "
        "of its own."
    )
