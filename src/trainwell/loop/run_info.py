"""What a run logs and records when it starts: the model, the machine, the plan."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")


def log_run_start(trainer: Trainer, batch_size: int, target_stats: dict[str, float] | None) -> dict[str, Any]:
    """Log what is about to be trained, how, and on what; return it as the run's ``run_info``.

    Args:
        trainer: The Trainer inside ``fit``, its parts built (``limits`` among them).
        batch_size: The first training batch's samples.
        target_stats: For regression, the first training batch's target mean and std (recorded for the doctor).
    """
    from trainwell.display import number
    from trainwell.loop.optimizers import is_fused
    from trainwell.system import system_info

    params = sum(p.numel() for p in trainer._parameters)
    optimizer = type(trainer.optimizer).__name__ + (" (fused)" if is_fused(trainer.optimizer) else "")
    # Optimizer steps: batches / accumulate_grad_batches (what step records and schedules count).
    per_epoch = trainer.limits.steps_per_epoch
    steps = per_epoch if per_epoch is not None else "?"
    accumulate = trainer.config.accumulate_grad_batches
    batches = f"batch {batch_size}" + (f" (x {accumulate} accumulated per step)" if accumulate > 1 else "")
    task = trainer.task.name if trainer.task else "custom"
    logger.info(
        "Training %s (%s trainable parameters) on %s in %s: %d epochs x %s steps of %s, %s, "
        "lr %s (%s schedule), task %s.",
        type(trainer.module).__name__,
        number(params),
        trainer.device,
        trainer.precision.name,
        trainer.config.epochs,
        steps,
        batches,
        optimizer,
        number(trainer.peak_lr),
        trainer.config.schedule,
        task,
    )
    if trainer.averaging is not None:
        why = " (ema_decay='auto': a convolutional model at a constant lr)" if trainer.config.ema_decay == "auto" else ""
        logger.info(
            "Averaging the weights, decay %g%s: validation, the best weights and the model kept are the average.",
            trainer.averaging.decay,
            why,
        )
    info = system_info(trainer.device, trainer.precision.name)
    logger.info(
        "Model:\n%s\nSystem: %s", trainer.model_summary, ", ".join(f"{key} {value}" for key, value in info.items())
    )
    run = {
        "batch_size": batch_size,
        "steps_per_epoch": per_epoch,
        "peak_lr": trainer.peak_lr,
        "parameters": params,
    }
    if accumulate > 1:
        run["accumulate_grad_batches"] = accumulate
    if trainer.averaging is not None:
        run["ema_decay"] = trainer.averaging.decay
    if trainer.target_scaling is not None:
        run["target_scaling"] = trainer.target_scaling.to_dict()
    if target_stats is not None:
        # The first training batch's targets, as the model learns them: the doctor judges their scale.
        run["targets"] = target_stats
    session = getattr(trainer, "distributed", None)
    if session is not None:  # under torchrun: batch_size is per process
        run.update(world_size=session.world_size, global_batch_size=batch_size * session.world_size)
    return {**info, **run, "task": task}
