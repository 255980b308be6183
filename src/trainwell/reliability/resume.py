"""Exact resume: what a trainer's checkpoint holds, and how a trainer is put back in that state.

A run stopped after any step and resumed in a new process takes the same steps as the run that
was never stopped: the checkpoint holds the model, optimizer, GradScaler, the peak learning rates
(the schedule itself is a function of the step), every random number generator (Python, NumPy,
torch CPU and CUDA), the counters (epoch, global step, batch position in the epoch), the epoch's
running sums, the callbacks' states (early stopping with its best weights), the history and
events, and the resolved config.

Resuming inside an epoch jumps to the saved batch without training on the batches before it:

- a loader with a ``start_at(batch_index)`` method (trainwell's ``TensorLoader``) starts its
  next pass there, from the same order (a function of its seed and the epoch);
- a ``torch.utils.data.DataLoader`` over a map-style dataset is repositioned by its sampler: the
  epoch's index order is redrawn from the random state saved when the epoch began and the
  indices already used are skipped without loading their samples. Exact with ``num_workers=0``;
  with workers the order and the workers' base seed are exact, but randomness drawn inside the
  workers (random augmentation) differs from the uninterrupted run;
- any other iterable (a list of batches, an ``IterableDataset``) is replayed from the start of
  the epoch under the saved random state and the batches already used are discarded (loaded,
  never trained on).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainwell.files.checkpoint import (
    FORMAT_VERSION,
    committed_checkpoints,
    latest_checkpoint,
    load_model_state,
    read_checkpoint,
    set_aside,
    versions,
)
from trainwell.exceptions import CheckpointError, CheckpointMismatchError, ConfigError

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")

# What resuming a trainer needs; checkpoints saved with save_checkpoint() hold only weights and extras.
_TRAINER_KEYS = (
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
_PRESENTATION_OPTIONS = {"run_dir", "progress", "log_every_steps"}


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
        directory = Path(run_dir) / "checkpoints"

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
    if path.is_dir():
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
    elif resume == "auto" and (run_dir / "metrics.jsonl").exists():
        logger.warning(
            "Dropping %s: the attempt that wrote it left no checkpoint, so training starts over.",
            run_dir / "metrics.jsonl",
        )
        (run_dir / "metrics.jsonl").unlink()
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


def capture(trainer: Trainer, batch_in_epoch: int | None) -> dict[str, Any]:
    """The trainer's whole state as a checkpoint dictionary (tensors and plain data only).

    Args:
        trainer: A trainer inside ``fit``.
        batch_in_epoch: Batches done in the current epoch, or None at the end of an epoch.
    """
    completed = trainer.epoch if batch_in_epoch is None else trainer.epoch - 1
    last_val = next((row["val_loss"] for row in reversed(trainer.history) if "val_loss" in row), None)
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "epoch": completed,
        "val_loss": last_val,
        "model_state_dict": trainer.module.state_dict(),
        "optimizer_state_dict": trainer.optimizer.state_dict(),
        "step": trainer.global_step,
        "batch_in_epoch": batch_in_epoch or 0,
        "precision": trainer.precision.state_dict(),
        "peak_lrs": list(trainer._peak_lrs),
        "rng": rng_state(trainer.device),
        "loader": {
            "state": _own_state(trainer._train_loader),
            "generators": _generator_states(trainer._train_loader),
            "epoch_start": trainer._epoch_start if batch_in_epoch is not None else None,
        },
        "epoch_progress": _epoch_progress(trainer) if batch_in_epoch is not None else None,
        "callbacks": {key: callback.state_dict() for key, callback in _keyed(trainer.callbacks)},
        "guard": {"skipped": trainer.guard.skipped, "consecutive": trainer.guard.consecutive},
        "healing": trainer.healer.state_dict(),
        "micro_batches": trainer._micro_batching.chunks,
        "should_stop": trainer.should_stop,
        "history": to_plain(trainer.history),
        "events": to_plain(trainer.events),
        "config": trainer.config.to_yaml_dict(),
        # How many processes shared the data: a position inside an epoch means nothing for another number.
        "world_size": trainer.distributed.world_size if getattr(trainer, "distributed", None) is not None else 1,
    }
    return checkpoint


def restore(trainer: Trainer, path: Path, checkpoint: dict[str, Any], train_loader: Any) -> None:
    """Put a freshly set-up trainer back in the state ``checkpoint`` recorded.

    Raises:
        CheckpointMismatchError: the checkpoint comes from another architecture or optimizer.
        CheckpointError: it is not a trainer checkpoint (no counters or random states).
        ConfigError: it was trained in another precision.
    """
    source = f"checkpoint '{path}'"
    missing = [key for key in _TRAINER_KEYS if checkpoint.get(key) is None]
    if missing:
        raise CheckpointError(
            f"{source} cannot resume training: it lacks {', '.join(missing)}. It was not written by trainwell's "
            "trainer; load its weights with trainwell.load_checkpoint(path, model) and train from there."
        )
    _warn_about_changed_options(checkpoint.get("config") or {}, trainer.config.to_yaml_dict())
    load_model_state(trainer.module, checkpoint["model_state_dict"], source)
    try:
        trainer.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    except (ValueError, KeyError) as error:
        raise CheckpointMismatchError(
            f"{source} holds the state of another optimizer or parameter grouping ({error}): resume with the "
            "optimizer and weight-decay settings the run was started with."
        ) from error
    trainer.precision.load_state_dict(checkpoint["precision"])
    trainer._peak_lrs = list(checkpoint["peak_lrs"])
    trainer.epoch = checkpoint["epoch"]
    trainer.global_step = checkpoint["step"]
    trainer.should_stop = checkpoint["should_stop"]
    trainer.history = list(checkpoint["history"])
    trainer.events = list(checkpoint["events"])
    trainer.guard.skipped = checkpoint["guard"]["skipped"]
    trainer.guard.consecutive = checkpoint["guard"]["consecutive"]
    trainer.healer.load_state_dict(checkpoint["healing"])
    trainer._micro_batching.chunks = checkpoint.get("micro_batches", 1)
    saved_callbacks = checkpoint["callbacks"]
    for key, callback in _keyed(trainer.callbacks):
        if key in saved_callbacks:
            callback.load_state_dict(saved_callbacks[key])
        elif callback.state_dict():
            logger.warning("Checkpoint has no state for callback %s: it starts afresh.", key)
    loader = checkpoint["loader"]
    if loader["state"] is not None and callable(getattr(train_loader, "load_state_dict", None)):
        train_loader.load_state_dict(loader["state"])
    if checkpoint["batch_in_epoch"]:
        trainer._resume_position = {
            "batch": checkpoint["batch_in_epoch"],
            "epoch_start": loader["epoch_start"],
            "progress": checkpoint["epoch_progress"],
        }
    # Last: nothing above may draw random numbers after the generators are restored.
    set_rng_state(checkpoint["rng"], trainer.device)
    _set_generator_states(train_loader, loader["generators"])
    batch = checkpoint["batch_in_epoch"]
    where = f"epoch {trainer.epoch + 1} after {batch} of its batches" if batch else f"the end of epoch {trainer.epoch}"
    trainer.record_event(
        "resumed", logging.INFO, f"Resumed from {path} at step {trainer.global_step} ({where}).", checkpoint=str(path)
    )


def _warn_about_changed_options(saved: dict[str, Any], current: dict[str, Any]) -> None:
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


def _keyed(callbacks: Iterable[Any]) -> list[tuple[str, Any]]:
    """Callbacks with stable keys for their states: the class name, numbered when it repeats."""
    seen: dict[str, int] = {}
    keyed = []
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", callback))
    return keyed


def _epoch_progress(trainer: Trainer) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else value

    return {
        "loss_sum": plain(trainer._loss_sum),
        "loss_count": plain(trainer._loss_count),
        "samples": trainer.epoch_samples,
        "nonfinite_at_start": trainer._nonfinite_at_epoch_start,
    }


def to_plain(value: Any) -> Any:
    """``value`` with NumPy scalars and other number-likes turned into Python numbers, anything else odd into text."""
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {to_plain(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return repr(value)


# ------------------------------------------------------------------------- random number generators


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators (CUDA's when training on CUDA)."""
    import numpy

    numpy_state = numpy.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype("int64")),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device is not None and device.type == "cuda" else None,
    }
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    import numpy

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    numpy.random.set_state(
        {
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype("uint32"), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and device is not None and device.type == "cuda":
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                "The checkpoint has CUDA random states for %d devices, this machine has %d: CUDA randomness "
                "(dropout on the GPU) will differ from the uninterrupted run.",
                len(cuda),
                torch.cuda.device_count(),
            )


# ------------------------------------------------------------------------- the loader's position


def begin_epoch(trainer: Trainer, train_loader: Any) -> tuple[Iterable[Any], int]:
    """Start an epoch: reset its running sums (or restore them when resuming inside it) and position the loader.

    Returns:
        The epoch's batches and the index of the first one.
    """
    position, trainer._resume_position = trainer._resume_position, None
    if position is None:
        trainer._reset_running_loss()
        trainer.epoch_samples = 0
        trainer._nonfinite_at_epoch_start = trainer.guard.skipped
        # Once per epoch, a few kilobytes: what a checkpoint inside this epoch needs to reposition the loader.
        trainer._epoch_start = {"torch": torch.get_rng_state(), "generators": _generator_states(train_loader)}
        return train_loader, 0
    restore_epoch_progress(trainer, position["progress"])
    trainer._epoch_start = position["epoch_start"]
    return epoch_batches(train_loader, position["batch"], position["epoch_start"]), position["batch"]


def _own_state(train_loader: Any) -> Any:
    """The loader's own ``state_dict()`` (trainwell's TensorLoader: its seed), if it has one and is not a DataLoader."""
    if _is_dataloader(train_loader) or not callable(getattr(train_loader, "load_state_dict", None)):
        return None
    state_dict = getattr(train_loader, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def epoch_batches(train_loader: Any, start: int, epoch_start: dict[str, Any] | None) -> Iterable[Any]:
    """The epoch's batches from batch ``start`` on, as the uninterrupted run would have drawn them.

    Args:
        train_loader: The training loader.
        start: Batches of the epoch already trained on before the checkpoint.
        epoch_start: The random state saved when the epoch began (see :func:`loader_state_at_epoch_start`).
    """
    if start == 0:
        return train_loader
    start_at = getattr(train_loader, "start_at", None)
    if callable(start_at):
        start_at(start)
        return train_loader
    if epoch_start is None:
        raise CheckpointError(
            "the checkpoint lacks the random state of its epoch's start, which resuming mid-epoch needs."
        )
    if _is_dataloader(train_loader) and _is_map_style(train_loader):
        return _dataloader_from(train_loader, start, epoch_start)
    return _replayed(train_loader, start, epoch_start)


def _dataloader_from(loader: Any, start: int, epoch_start: dict[str, Any]) -> Iterable[Any]:
    """A DataLoader iterator positioned at batch ``start``, without loading the skipped samples.

    The uninterrupted run's iterator drew, from the state the epoch began with, first the
    workers' base seed and then the sampler's order; both are drawn again here in that order, the
    used indices are skipped, and a loader over the rest of the same sampler iterator is started
    under that state.
    """
    from torch.utils.data import DataLoader

    from trainwell.data.loader import dataloader_options

    index_source = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    with _at_epoch_start(loader, epoch_start):
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)  # the base seed
        indices = iter(index_source)
        for _ in itertools.islice(indices, start):
            pass
        # The sampler's own iterator goes on: whatever it draws later (a sampler may draw again when
        # it runs out) comes from the generators' states at that time, as in the uninterrupted run.
        remaining = _Continuing(indices, len(index_source) - start)
        _rewind(loader, epoch_start)
        options = dataloader_options(loader)
        if loader.batch_sampler is not None:
            rest = DataLoader(loader.dataset, batch_sampler=remaining, **options)
        else:
            rest = DataLoader(loader.dataset, sampler=remaining, batch_size=None, **options)
        return iter(rest)


class _Continuing:
    """A sampler that continues an iterator already under way (DataLoader iterates it once)."""

    def __init__(self, iterator: Iterator[Any], length: int) -> None:
        self.iterator = iterator
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        return self.iterator

    def __len__(self) -> int:
        return self.length


def _replayed(loader: Iterable[Any], start: int, epoch_start: dict[str, Any]) -> Iterable[Any]:
    """An iterator over ``loader`` past its first ``start`` batches, drawn under the epoch's starting random state."""
    with _at_epoch_start(loader, epoch_start):
        iterator = iter(loader)
        for _ in itertools.islice(iterator, start):
            pass
    return iterator


@contextlib.contextmanager
def _at_epoch_start(loader: Any, epoch_start: dict[str, Any]) -> Iterator[None]:
    """Run a block with the random state the epoch began with, then put back the current one."""
    current = _generator_states(loader)
    with torch.random.fork_rng(devices=[]):
        _rewind(loader, epoch_start)
        yield
    _set_generator_states(loader, current)


def _rewind(loader: Any, epoch_start: dict[str, Any]) -> None:
    torch.set_rng_state(epoch_start["torch"])
    _set_generator_states(loader, epoch_start.get("generators"))


def _generator_states(loader: Any) -> list[torch.Tensor] | None:
    generators = _generators(loader)
    return [generator.get_state() for generator in generators] if generators else None


def _set_generator_states(loader: Any, states: list[torch.Tensor] | None) -> None:
    if not states:
        return
    for generator, state in zip(_generators(loader), states):
        generator.set_state(state)


def _generators(loader: Any) -> list[torch.Generator]:
    """The loader's and its sampler's own generators, if they have any (each counted once)."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _is_dataloader(loader: Any) -> bool:
    from torch.utils.data import DataLoader

    return isinstance(loader, DataLoader)


def _is_map_style(loader: Any) -> bool:
    from torch.utils.data import IterableDataset

    return not isinstance(loader.dataset, IterableDataset)


def restore_epoch_progress(trainer: Trainer, progress: dict[str, Any]) -> None:
    """Put back the running sums of an epoch that a checkpoint interrupted."""

    def on_device(value: Any) -> Any:
        return value.to(trainer.device) if isinstance(value, torch.Tensor) else value

    trainer._loss_sum = on_device(progress["loss_sum"])
    trainer._loss_count = on_device(progress["loss_count"])
    trainer.epoch_samples = progress["samples"]
    trainer._nonfinite_at_epoch_start = progress["nonfinite_at_start"]
