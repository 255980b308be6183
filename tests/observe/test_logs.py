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


def test_records_before_the_file_exists_are_written_first(tmp_path):
    from trainwell.observe.logs import captured

    logger = logging.getLogger("trainwell")
    logger.setLevel(logging.INFO)
    path = tmp_path / "run" / "train.log"
    with captured():
        logger.info("loaded the data")
        with captured():  # nested: one capture, each record kept once
            logger.info("built the model")
        with log_to_file(path):
            logger.info("epoch 1")
        logger.info("after the file closed")
    lines = [line.split(" INFO ")[1] for line in path.read_text().splitlines()]
    assert lines == ["loaded the data", "built the model", "epoch 1"]
    assert not [h for h in logger.handlers if type(h).__name__ == "_Pending"]


def test_a_capture_another_process_writes_is_dropped(tmp_path):
    from trainwell.observe.logs import captured, drop_captured

    logger = logging.getLogger("trainwell")
    logger.setLevel(logging.INFO)
    with captured():
        logger.info("kept")
        drop_captured()
        logger.info("not kept")
        (pending,) = [h for h in logger.handlers if type(h).__name__ == "_Pending"]
        assert pending.records == []


def test_quiet_lowers_the_console_only(monkeypatch, tmp_path):
    import io

    from trainwell.observe.logs import ConsoleHandler

    logger = logging.getLogger("trainwell")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    logger.setLevel(logging.NOTSET)
    setup_console_logging(logging.WARNING)
    (console,) = logger.handlers
    assert isinstance(console, ConsoleHandler) and console.level == logging.WARNING
    setup_console_logging()  # Trainer.fit's call keeps the level the command chose
    assert console.level == logging.WARNING and logger.level == logging.INFO
    console.stream = io.StringIO()
    with log_to_file(tmp_path / "train.log"):
        logger.info("data summary")
        logger.warning("careful")
    assert console.stream.getvalue() == "careful\n"
    assert "data summary" in (tmp_path / "train.log").read_text()


def test_the_console_writes_through_an_open_progress_bar(monkeypatch):
    import io

    from trainwell.display import progress
    from trainwell.observe.logs import ConsoleHandler

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    handler = ConsoleHandler(stream)
    bar = progress(total=10, desc="epoch 1/1", enabled=True)
    bar.update(5)
    handler.emit(logging.LogRecord("trainwell", logging.INFO, __file__, 1, "epoch 1/1  train_loss 0.5", None, None))
    bar.close()
    before, message, after = stream.getvalue().partition("epoch 1/1  train_loss 0.5\n")
    # tqdm cleared the bar's line first (blanks, then a carriage return), then drew the bar again below.
    assert message and before.endswith(" \r") and after.startswith("\repoch 1/1:  50%")
