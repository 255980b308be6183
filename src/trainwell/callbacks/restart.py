"""The ``restart`` event: torchrun started the processes again, and where training goes on from."""

from __future__ import annotations

import logging
from typing import Any

from trainwell.callbacks.base import Callback, TrainerView


class Restarted(Callback):
    """Records a ``restart`` event when training begins in a group torchrun restarted.

    Added by the Trainer when ``TORCHELASTIC_RESTART_COUNT`` > 0
    (:mod:`trainwell.distributed.elastic`); the event says which attempt this is and from which
    step training goes on (0: no checkpoint was committed before the failure).

    Args:
        restarts: How many times torchrun restarted the group.
    """

    def __init__(self, restarts: int) -> None:
        self.restarts = restarts

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        step = trainer.global_step
        where = f"from step {step}, the newest committed checkpoint" if step else "from the beginning (no checkpoint)"
        trainer.record_event(
            "restart",
            logging.WARNING,
            f"torchrun restarted the processes after a failure (restart {self.restarts}): training goes on {where}.",
            restart=self.restarts,
            from_step=step,
        )
