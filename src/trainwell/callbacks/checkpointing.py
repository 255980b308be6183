"""The trainer's automatic checkpoints: the last state every epoch (and every N steps), and the best by the
monitored metric, also under the stable names ``last.pt`` and ``best.pt``."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.exceptions import CheckpointError
from trainwell.files.checkpoint import alias_checkpoint, write_checkpoint
from trainwell.files.manifest import Manifest, committed_checkpoints, epoch_checkpoints, prune, read_manifest
from trainwell.files.retry import DEFAULT_POLICY, RetryPolicy
from trainwell.files.rundir import BEST_CHECKPOINT, LAST_CHECKPOINT, RunPaths
from trainwell.observe.monitor import Monitor
from trainwell.system import is_primary_process

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView
    from trainwell.config import TrainConfig

logger = logging.getLogger("trainwell")

_NAME = re.compile(r"^(epoch-\d+-)?step-\d+\.(pt|dcp)$")


class Checkpointing(Callback):
    """Write exact-resume checkpoints into ``directory``, atomically, keeping the newest and the best.

    Checkpoints are written at the end of every epoch, every ``every_steps`` optimizer steps when
    set, and when the trainer is interrupted by a signal. After each commit, all but the
    ``keep_last`` newest and the ``keep_best`` best end-of-epoch ones (by ``monitor``) are
    deleted. Files are named ``epoch-0003-step-000000750.pt`` (end of an epoch) and
    ``step-000000800.pt`` (inside one); which one is the latest is decided by the step recorded in
    their manifests. What a checkpoint holds is the trainer's to say (``trainer.checkpoint()``);
    this callback decides when and where it is written, and ``writer`` how: by default rank 0
    writes one file; a sharded run's processes write a ``.dcp`` directory together
    (:mod:`trainwell.distributed.shards`). Each manifest records the monitored metric's value, by
    which the best are chosen.

    After each commit, ``last.pt`` is the checkpoint just committed and ``best.pt`` the best
    end-of-epoch one by the monitor (:attr:`best_path`): hard links where the file system has them
    (no extra space), else copies, each committed by its own manifest, so that a crash never leaves
    one that looks complete but is not (:func:`~trainwell.files.checkpoint.alias_checkpoint`).
    Sharded checkpoints (``.dcp`` directories) get no aliases: ``load_model(run_dir, "best")``
    and :func:`~trainwell.use.inference.find_checkpoint` make the same choice from the manifests.

    Put it after every callback whose state it should capture: the Trainer runs it last.

    Args:
        directory: Where checkpoints go (a run's ``checkpoints/``).
        every_steps: Also write one every this many optimizer steps; None only at epoch ends.
        keep_last: How many of the newest checkpoints to keep (≥ 1; 2 leaves a fallback should
            the newest be damaged later).
        keep_best: How many of the best end-of-epoch checkpoints to keep as well.
        monitor: Which end-of-epoch checkpoint is best (by the monitored metric's recorded value);
            the default is the lowest val_loss.
        on_good_commit: Called after each commit of a healthy state (the healer then rolls back
            to checkpoints instead of its host copy).
        retry: Attempts and backoff for transient write errors.
        sleep: Waits between attempts (tests pass a fake clock).
        writer: How every process writes a checkpoint together (``writer(path, checkpoint,
            **manifest_fields)``), for sharded runs; None: rank 0 writes one file.

    Attributes:
        last_path: The checkpoint this callback committed last, or None.

    Example:
        >>> saver = Checkpointing("runs/exp1/checkpoints", every_steps=500)
    """

    def __init__(
        self,
        directory: str | Path,
        every_steps: int | None = None,
        keep_last: int = 2,
        keep_best: int = 1,
        monitor: Monitor | None = None,
        on_good_commit: Callable[[], Any] | None = None,
        retry: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], Any] = time.sleep,
        writer: Callable[..., Path] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.monitor = monitor or Monitor("val_loss")
        self.on_good_commit = on_good_commit
        self.retry = retry
        self.sleep = sleep
        self.writer = writer
        self.last_path: Path | None = None

    @classmethod
    def for_config(
        cls,
        config: TrainConfig,
        monitor: Monitor | None = None,
        on_good_commit: Callable[[], Any] | None = None,
        writer: Callable[..., Path] | None = None,
    ) -> Checkpointing | None:
        """The checkpointing a config asks for: into ``run_dir/checkpoints``, or None without a run directory."""
        if config.run_dir is None or not config.save_checkpoints:
            return None
        retry = RetryPolicy(
            attempts=config.retry_attempts,
            base_delay_s=config.retry_base_delay_s,
            factor=config.retry_factor,
            jitter=config.retry_jitter,
        )
        return cls(
            RunPaths(Path(config.run_dir)).checkpoints,
            every_steps=config.checkpoint_every_steps,
            keep_last=config.checkpoint_keep_last,
            keep_best=config.checkpoint_keep_best,
            monitor=monitor,
            on_good_commit=on_good_commit,
            retry=retry,
            writer=writer,
        )

    def on_batch_end(
        self, trainer: TrainerView, batch_index: int, loss: Any, stepped: bool = True, **kwargs: Any
    ) -> None:
        # Once per optimizer step (never inside a gradient window, whose state a checkpoint cannot hold).
        if stepped and self.every_steps is not None and trainer.global_step % self.every_steps == 0:
            self.save(trainer, kind="step")

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        self.save(trainer, kind="epoch")

    def save(self, trainer: TrainerView, kind: str) -> Path | None:
        """Write a checkpoint of ``trainer`` now (None when this process does not write files).

        Args:
            trainer: The trainer, inside ``fit``: between two steps, or at the end of an epoch.
            kind: ``"epoch"``, ``"step"`` or ``"interrupt"``.

        Returns:
            The committed checkpoint (the one just written, or the one already committed at this
            very position).

        Raises:
            CheckpointError: writing failed; earlier checkpoints are intact.
        """
        if self.writer is None and not is_primary_process():
            return None
        inside = trainer.batch_in_epoch is not None
        completed = trainer.epoch - 1 if inside else trainer.epoch
        suffix = ".pt" if self.writer is None else ".dcp"
        name = (
            f"step-{trainer.global_step:09d}{suffix}"
            if inside
            else f"epoch-{completed:04d}-step-{trainer.global_step:09d}{suffix}"
        )
        path = self.directory / name
        committed = _committed_manifest(path)
        if committed is not None and committed.order == (trainer.global_step, completed):
            # The same position was committed already (just now, or before a resume): the state is
            # the same, and rewriting it would briefly leave it uncommitted.
            return path
        healthy = trainer.is_healthy()
        started = time.perf_counter()
        path = (self.writer or write_checkpoint)(
            path,
            trainer.checkpoint(),
            step=trainer.global_step,
            epoch=completed,
            val_loss=_last_value(trainer, "val_loss"),
            kind=kind,
            healthy=healthy,
            monitor=self.monitor.metric,
            monitored=_last_value(trainer, self.monitor.metric),
            retry=self.retry,
            sleep=self.sleep,
        )
        if is_primary_process():
            prune(self.directory, self.keep_last, self.keep_best, is_ours=_is_ours, best_first=self._best_first)
        self.last_path = path
        if self.writer is None:  # a sharded checkpoint is a directory, which an alias cannot link or copy
            self._update_aliases(path)
        if healthy and self.on_good_commit is not None:
            self.on_good_commit()
        logger.debug("Checkpoint %s committed in %.3f s.", path, time.perf_counter() - started)
        return path

    @property
    def best_path(self) -> Path | None:
        """The best committed end-of-epoch checkpoint by the monitor (the newest checkpoint when none has a value)."""
        committed = [m for m in committed_checkpoints(self.directory) if _is_ours(m.path)]
        ranked = self._best_first(epoch_checkpoints(committed))
        if ranked:
            return ranked[0].path
        return committed[0].path if committed else None

    def _best_first(self, manifests: list[Manifest]) -> list[Manifest]:
        return self.monitor.ranked(manifests, value=lambda m: m.value(self.monitor.metric))

    def _update_aliases(self, newest: Path) -> None:
        """Point ``last.pt`` at ``newest`` and ``best.pt`` at the best end-of-epoch checkpoint (when it changed).

        The checkpoint itself is committed already: an alias that cannot be written is logged and
        left uncommitted, so that nothing loads a stale one, and training goes on.
        """
        committed = [m for m in committed_checkpoints(self.directory) if _is_ours(m.path)]
        best = self._best_first(epoch_checkpoints(committed))
        targets = {LAST_CHECKPOINT: next((m for m in committed if m.path == newest), None)}
        targets[BEST_CHECKPOINT] = best[0] if best else None
        for name, source in targets.items():
            alias = self.directory / name
            if source is None or _same_alias(alias, source):
                continue
            try:
                alias_checkpoint(source, alias, retry=self.retry, sleep=self.sleep)
            except CheckpointError as error:
                logger.warning(
                    "Could not update %s (the checkpoint %s is committed): %s", alias, source.path.name, error
                )


def _is_ours(path: Path) -> bool:
    return bool(_NAME.match(path.name))


def _same_alias(alias: Path, source: Manifest) -> bool:
    """Whether ``alias`` is committed as ``source`` already (then it is left as it is)."""
    current = _committed_manifest(alias)
    return current is not None and current.alias_of == source.path.name and current.sha256 == source.sha256


def _committed_manifest(path: Path) -> Manifest | None:
    try:
        return read_manifest(path) if path.exists() else None
    except CheckpointError:
        return None


def _last_value(trainer: TrainerView, metric: str) -> float | None:
    """``metric`` in the last completed epoch's row (a checkpoint inside an epoch records the epoch before)."""
    if not trainer.history:
        return None
    value = trainer.history[-1].get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
