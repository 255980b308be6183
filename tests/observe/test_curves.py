import io

import pytest
from PIL import Image

from trainwell import ConfigError
from trainwell.observe.curves import plot_runs, render_curves
from trainwell.observe.records import RunRecords


def _run(name, losses, steps_per_epoch=10):
    records = [{"event": "run_start", "steps_per_epoch": steps_per_epoch}]
    for epoch, (train, val) in enumerate(losses, start=1):
        records.append(
            {
                "event": "step",
                "epoch": epoch,
                "step": epoch * steps_per_epoch - 5,
                "train_loss": train,
                "lr": 0.01 * epoch,
            }
        )
        records.append(
            {
                "event": "epoch",
                "epoch": epoch,
                "step": epoch * steps_per_epoch,
                "train_loss": train,
                "val_loss": val,
                "val_accuracy": 1 - val,
                "lr": 0.01 * epoch,
            }
        )
    run = RunRecords.from_records(records)
    run.path = run.path / name
    return run


def _image(data):
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_run_draws_a_decodable_png_of_three_panels():
    image = _image(render_curves([_run("a", [(1.0, 0.9), (0.5, 0.6), (None, 0.5)])]))
    assert image.format == "PNG" and image.size == (1500, 420)
    # Lines were drawn: far more than the background and frame colours.
    assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 50


def test_several_runs_are_overlaid(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text('{"event": "epoch", "epoch": 1, "train_loss": 1.0, "lr": 0.1}\n')
    out = plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "compare.png")
    assert _image(out.read_bytes()).format == "PNG"
    assert plot_runs([tmp_path / "a"]) == tmp_path / "a" / "curves.png" and (tmp_path / "a" / "curves.png").is_file()


def test_a_run_without_validation_still_plots():
    run = RunRecords.from_records([{"event": "epoch", "epoch": 1, "train_loss": 1.0, "lr": 0.1}])
    assert _image(render_curves([run])).format == "PNG"


def test_a_missing_run_directory_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        plot_runs([tmp_path / "missing"])


def test_the_metric_panel_falls_back_to_a_chosen_validation_metric():
    from trainwell.observe.curves import _metric_of

    run = RunRecords.from_records([{"event": "epoch", "epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_top5": 0.7}])
    assert _metric_of([run]) == ("val_top5", "validation top5")
    assert _metric_of([_run("a", [(1.0, 0.9)])]) == ("val_accuracy", "validation accuracy")
