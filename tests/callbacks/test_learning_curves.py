import trainwell
from trainwell.callbacks import learning_curves
from trainwell.callbacks.learning_curves import LearningCurves


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _drawn(monkeypatch, tmp_path, min_interval_s, cost_ratio, epoch_seconds, draw_seconds):
    clock = FakeClock()
    monkeypatch.setattr(learning_curves.time, "perf_counter", clock)
    (tmp_path / "metrics.jsonl").write_text('{"event": "epoch", "epoch": 1, "train_loss": 1.0, "lr": 0.1}\n')
    curves = LearningCurves(tmp_path, min_interval_s=min_interval_s, cost_ratio=cost_ratio)
    monkeypatch.setattr("trainwell.observe.curves.plot_runs", lambda run_dirs: setattr(clock, "now", clock.now + draw_seconds))
    curves.on_train_begin(None)
    drawn_after = []
    for epoch in range(1, 11):
        clock.now += epoch_seconds
        before = curves.redraws
        curves.on_epoch_end(None, epoch=epoch, metrics={})
        if curves.redraws > before:
            drawn_after.append(epoch)
    curves.on_train_end(None)
    return drawn_after, curves.redraws


def test_quick_epochs_are_drawn_only_at_the_end(monkeypatch, tmp_path):
    # The default run: 0.03 s epochs, 0.2 s a drawing; nothing before the end.
    assert _drawn(monkeypatch, tmp_path, 10.0, 20.0, epoch_seconds=0.03, draw_seconds=0.2) == ([], 1)


def test_slow_epochs_are_drawn_every_epoch(monkeypatch, tmp_path):
    assert _drawn(monkeypatch, tmp_path, 10.0, 20.0, epoch_seconds=30.0, draw_seconds=0.2) == (list(range(1, 11)), 11)


def test_drawing_stays_a_small_share_of_the_run(monkeypatch, tmp_path):
    # 4 s epochs: every third epoch passes the 10 s interval.
    assert _drawn(monkeypatch, tmp_path, 10.0, 20.0, epoch_seconds=4.0, draw_seconds=0.2)[0] == [3, 6, 9]
    # A slow drawing (1 s) waits 20 s between redraws.
    assert _drawn(monkeypatch, tmp_path, 10.0, 20.0, epoch_seconds=4.0, draw_seconds=1.0)[0] == [3, 8]


def test_a_run_directory_gets_curves_png(classifier, blob_loaders, tmp_path):
    trainwell.fit(classifier, *blob_loaders, epochs=2, run_dir=tmp_path, progress=False)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
