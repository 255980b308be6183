import logging

from trainwell.observe.logs import log_to_file, setup_console_logging


def test_console_handler_only_when_the_application_configured_nothing(monkeypatch):
    root = logging.getLogger()
    logger = logging.getLogger("trainwell")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    logger.setLevel(logging.NOTSET)
    setup_console_logging()
    assert logger.level == logging.INFO
    assert len(logger.handlers) == 1 and isinstance(logger.handlers[0], logging.StreamHandler)
    setup_console_logging()
    assert len(logger.handlers) == 1


def test_configured_applications_keep_control(monkeypatch):
    logger = logging.getLogger("trainwell")
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    monkeypatch.setattr(logger, "handlers", [])
    logger.setLevel(logging.WARNING)
    setup_console_logging()
    assert logger.handlers == [] and logger.level == logging.WARNING


def test_log_to_file_writes_info_and_detaches(tmp_path):
    logger = logging.getLogger("trainwell")
    logger.setLevel(logging.INFO)
    path = tmp_path / "run" / "train.log"
    with log_to_file(path):
        logger.info("hello %s", "file")
    logger.info("after")
    text = path.read_text()
    assert "INFO hello file" in text and "after" not in text
