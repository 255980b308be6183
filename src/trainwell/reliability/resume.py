"""Exact resume: which checkpoint a run continues from, and what a trainer's checkpoint holds.

A run stopped after any step and resumed in a new process takes the same steps as the run that
was never stopped. The checkpoint holds the trainer's whole state, one entry per stateful part
(:meth:`trainwell.Trainer.state_dict`: model, optimizer, precision with its GradScaler, schedule,
loop state, guard, healer, micro-batching, callbacks, loader position, random generators), under
``"trainer"``, beside the classic keys that plain ``torch.load`` readers know
(``model_state_dict``, ``optimizer_state_dict``, ``epoch``, ``step``, ``val_loss``) and the
resolved config. Checkpoints of format 1 (trainwell 0.1 before the parts had their own states)
are read too: :func:`trainer_state_of` turns their flat keys into the parts' states.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trainwell.exceptions import CheckpointError, ConfigError
from trainwell.files.checkpoint import FORMAT_VERSION, latest_checkpoint, read_checkpoint, versions
from trainwell.files.manifest import committed_checkpoints, set_aside
from trainwell.files.rundir import RunPaths
from trainwell.files.sharded import is_sharded_checkpoint

logger = logging.getLogger("trainwell")

# The parts of a trainer's state, under "trainer" in a checkpoint of format 2.
TRAINER_KEY = "trainer"
# What a format-1 checkpoint needs to resume; checkpoints saved with save_checkpoint() hold only weights and extras.
_FORMAT_1_KEYS = (
    "model_state_dict",
    "optimizer_state_dict",
    "step",
    "batch_in_epoch",
    "precision",
    "peak_lrs",
    "rng",
    "loader",
    "callbacks",
    "guard",
    "healing",
    "should_stop",
    "history",
    "events",
)
# Options that may change between a run and its resumption without making it a different run.
_PRESENTATION_OPTIONS = {"run_dir", "run_dir_wait_s", "progress", "log_every_steps"}


# ------------------------------------------------------------------------- finding the checkpoint


def locate(resume: Any, run_dir: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``resume`` asks for, loaded and verified; None to start from the beginning.

    Args:
        resume: None (no resume), ``"auto"`` (the newest good checkpoint of ``run_dir``, if any),
            or the path of a checkpoint file, a run directory or a checkpoint directory.
        run_dir: The run directory training writes to.

    Raises:
        ConfigError: ``resume`` is not one of those, or ``"auto"`` without a run directory.
        CheckpointError: an explicitly named checkpoint is corrupt or unsafe, or a named
            directory holds no good checkpoint.
    """
    if resume is None:
        return None
    if resume == "auto":
        if run_dir is None:
            raise ConfigError(
                "resume='auto' needs run_dir: the run directory whose checkpoints to continue from "
                "(e.g. run_dir='runs/exp1', or --out runs/exp1 on the command line)."
            )
        directory = RunPaths(Path(run_dir)).checkpoints

        def set_aside_corrupt(manifest: Any, error: CheckpointError) -> None:
            set_aside(manifest, ".corrupt")
            logger.warning(
                "Set %s aside as %s.corrupt; resuming from the checkpoint before it.",
                manifest.path.name,
                manifest.path.name,
            )

        found = latest_checkpoint(directory, on_bad=set_aside_corrupt)
        if found is None:
            logger.info(
                "resume='auto': no committed checkpoint in %s, so training starts from the beginning.", directory
            )
        return found
    if not isinstance(resume, (str, Path)):
        raise ConfigError(
            f"resume={resume!r} has the wrong type: expected 'auto', a checkpoint file or a run directory."
        )
    path = Path(resume)
    if not path.exists():
        raise ConfigError(f"resume='{path}' does not exist: expected 'auto', a checkpoint file or a run directory.")
    if path.is_dir() and not is_sharded_checkpoint(path):  # a run directory or its checkpoints/
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"resume='{path}' holds no committed checkpoint that verifies: nothing to resume from."
            )
        return found
    return path, read_checkpoint(path)


def continues_in(resume: Any, run_dir: Path) -> bool:
    """Whether resuming continues the run that ``run_dir`` already holds (which it may then reuse)."""
    if resume == "auto":
        return True
    if not isinstance(resume, (str, Path)):
        return False
    try:
        Path(resume).resolve().relative_to(run_dir.resolve())
    except ValueError:
        return False
    return True


def start_in(resume: Any, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """:func:`locate` for a run that writes to ``run_dir``, tidying that directory for the continuation.

    Checkpoints newer than the one resumed from are set aside, and when ``resume="auto"`` finds
    nothing to resume from, the metrics of the attempt that left no checkpoint are dropped (the run
    starts over and writes them again).
    """
    found = locate(resume, run_dir)
    if found is not None:
        if continues_in(found[0], run_dir):
            supersede_newer(found[0])
    elif resume == "auto" and RunPaths(run_dir).metrics.exists():
        metrics = RunPaths(run_dir).metrics
        logger.warning("Dropping %s: the attempt that wrote it left no checkpoint, so training starts over.", metrics)
        metrics.unlink()
    return found


def supersede_newer(path: Path) -> None:
    """Set aside committed checkpoints newer than ``path`` in its directory: they belong to an abandoned branch.

    Without this, "latest" (the highest step) would keep pointing at the abandoned branch.
    """
    newest_first = committed_checkpoints(path.parent)
    resumed = next((m for m in newest_first if m.path == path), None)
    if resumed is None:
        return
    for manifest in newest_first:
        if manifest.order > resumed.order:
            set_aside(manifest, ".superseded")
            logger.warning(
                "Set %s aside as %s.superseded: training continues from the older %s.",
                manifest.path.name,
                manifest.path.name,
                path.name,
            )


# ------------------------------------------------------------------------- what a checkpoint holds


def checkpoint_of(
    trainer_state: dict[str, Any],
    state: Any,
    *,
    config: dict[str, Any],
    world_size: int,
    weights: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dictionary a checkpoint file holds for a trainer's state.

    Args:
        trainer_state: :meth:`trainwell.Trainer.state_dict`, one entry per stateful part.
        state: The loop state (:class:`trainwell.loop.state.TrainState`): where the run stands.
        config: The resolved config, as plain data.
        world_size: How many processes shared the data (a position inside an epoch means nothing for another number).
        weights: The weights the run is judged by, when they are not the module's (the moving
            average with ``ema_decay``): ``model_state_dict`` holds them, for inference and export,
            while the trainer's state keeps the live weights to resume from.
    """
    last_val_loss = next((row["val_loss"] for row in reversed(state.history) if "val_loss" in row), None)
    return {
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "epoch": state.completed_epochs,
        "step": state.global_step,
        "batch_in_epoch": state.batch_in_epoch or 0,
        "val_loss": last_val_loss,
        # The classic names of plain torch.save checkpoints, for readers that know only those: the same
        # objects as the trainer's entries, which pickling stores once.
        "model_state_dict": weights if weights is not None else trainer_state["model"],
        "optimizer_state_dict": trainer_state["optimizer"],
        TRAINER_KEY: trainer_state,
        "config": config,
        "world_size": world_size,
    }


def trainer_state_of(checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """The trainer's state a checkpoint holds, one entry per part (a format-1 checkpoint's flat keys converted).

    Raises:
        CheckpointError: the checkpoint cannot resume training (saved with ``save_checkpoint``:
            weights only), naming what it lacks.
    """
    if checkpoint.get("format_version", 1) >= 2:
        if isinstance(checkpoint.get(TRAINER_KEY), dict):
            return checkpoint[TRAINER_KEY]
        missing = [f"the trainer's state ({TRAINER_KEY!r})"]
    else:
        missing = [key for key in _FORMAT_1_KEYS if checkpoint.get(key) is None]
    if missing:
        raise CheckpointError(
            f"{source} cannot resume training: it lacks {', '.join(missing)}. It was not written by trainwell's "
            "trainer; load its weights with trainwell.load_checkpoint(path, model) and train from there."
        )
    return _format_1_parts(checkpoint)


def _format_1_parts(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint's flat keys as the parts' states (parts it did not know start afresh)."""
    inside = bool(checkpoint["batch_in_epoch"])
    progress = checkpoint.get("epoch_progress") or {}
    return {
        "model": checkpoint["model_state_dict"],
        "optimizer": checkpoint["optimizer_state_dict"],
        "precision": checkpoint["precision"],
        "schedule": {"peak_lrs": checkpoint["peak_lrs"]},
        "state": {
            # Format 1 counted completed epochs; the loop state counts the epoch under way.
            "epoch": checkpoint["epoch"] + 1 if inside else checkpoint["epoch"],
            "global_step": checkpoint["step"],
            "batch_in_epoch": checkpoint["batch_in_epoch"] if inside else None,
            "should_stop": checkpoint["should_stop"],
            "history": checkpoint["history"],
            "events": checkpoint["events"],
            "loss_sum": progress.get("loss_sum", 0.0),
            "loss_count": progress.get("loss_count", 0),
            "epoch_samples": progress.get("samples", 0),
            "skipped_at_epoch_start": progress.get("nonfinite_at_start", 0),
        },
        "guard": checkpoint["guard"],
        "healer": checkpoint["healing"],
        "micro_batching": {"chunks": checkpoint.get("micro_batches", 1)},
        "callbacks": checkpoint["callbacks"],
        "loader": checkpoint["loader"],
        "rng": checkpoint["rng"],
    }


def warn_about_changed_options(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Warn, naming them, when options that change the training differ from those the checkpoint was written with."""
    changed = [
        f"{name} {saved[name]!r} -> {current[name]!r}"
        for name in current
        if name in saved and name not in _PRESENTATION_OPTIONS and saved[name] != current[name]
    ]
    if changed:
        logger.warning(
            "Resuming with changed options (%s): the run continues, but it will not match an uninterrupted run "
            "with the original options.",
            "; ".join(changed),
        )
