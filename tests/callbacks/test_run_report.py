import logging

import pytest

import trainwell


class FailAt(trainwell.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, trainer, epoch, **kwargs):
        if epoch == self.epoch:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_a_failed_run_still_gets_its_curves_and_a_report_that_says_why(classifier, blob_loaders, tmp_path, caplog):
    with pytest.raises(RuntimeError, match="out of memory"), caplog.at_level(logging.WARNING, logger="trainwell"):
        trainwell.fit(classifier, *blob_loaders, epochs=5, run_dir=tmp_path, callbacks=[FailAt(3)], progress=False)
    page = (tmp_path / "report.html").read_text()
    assert "Failed with RuntimeError after 2 epochs" in page and "out of memory" in page
    assert (tmp_path / "curves.png").is_file()
    assert any("Doctor: ERROR out of memory" in record.getMessage() for record in caplog.records)


def test_a_healthy_run_logs_no_doctor_warning(classifier, blob_loaders, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trainwell"):
        trainwell.fit(classifier, *blob_loaders, epochs=3, lr=1e-2, run_dir=tmp_path, progress=False)
    messages = [record.getMessage() for record in caplog.records]
    assert "Doctor: no problems found." in messages
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_diverged_run_says_why_once_in_its_report(classifier, blob_loaders, tmp_path):
    import html
    import re

    message = "Training diverged: the loss was non-finite for 5 steps in a row. Lower lr (now 1; try 0.1), check the data for NaN values."

    class Diverge(trainwell.Callback):
        def on_epoch_begin(self, trainer, epoch, **kwargs):
            if epoch == 2:
                raise trainwell.DivergenceError(message)

    with pytest.raises(trainwell.DivergenceError):
        trainwell.fit(classifier, *blob_loaders, epochs=5, run_dir=tmp_path, progress=False, callbacks=[Diverge()])
    page = html.unescape(re.sub(r"<[^>]+>", " ", (tmp_path / "report.html").read_text()))
    assert page.count(message[:60]) == 2  # the status line; the doctor's evidence quotes the first sentence only
    assert page.count("Lower lr (now 1") == 1 and "type=DivergenceError" in page
    assert "values.." not in page and ".." not in page.replace("...", "")
