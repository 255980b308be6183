"""At the end of a run: the doctor's diagnosis in the log, and the run's report.html."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.files.rundir import RunPaths

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

logger = logging.getLogger("trainwell")


class RunReport(Callback):
    """Run the doctor on the run directory and write its report.html when training ends or fails.

    Each finding is logged as a warning (an error when it made the run fail); a healthy run
    logs one info line. Place it after the callbacks that write metrics.jsonl, curves.png and
    confusion.json, which the report embeds.

    Args:
        run_dir: The run directory.

    Example:
        >>> report = RunReport("runs/demo")
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.findings: list[Any] = []

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._diagnose_and_report()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        # A failed run's report says why it failed; writing it must not hide the failure.
        try:
            self._diagnose_and_report()
        except Exception as report_error:  # noqa: BLE001 - the training error is the one to raise
            logger.warning("Could not write the report of the failed run: %s", report_error)

    def _diagnose_and_report(self) -> None:
        from trainwell.observe.doctor import diagnose
        from trainwell.observe.report import write_report

        if not RunPaths(self.run_dir).metrics.is_file():
            return
        self.findings = diagnose(self.run_dir)
        for finding in self.findings:
            logger.log(logging.ERROR if finding.severity == "error" else logging.WARNING, "Doctor: %s", finding)
        if not self.findings:
            logger.info("Doctor: no problems found.")
        path = write_report(self.run_dir, findings=self.findings)
        logger.info("Report: %s", path)
