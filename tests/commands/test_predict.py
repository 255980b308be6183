import csv
import io
import json

import pytest

from trainwell.cli import main
from trainwell.use.tables import feature_names


def _digits_csv(path, count=12, drop=None):
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = [name for name in feature_names("digits") if name != drop]
    keep = [i for i, name in enumerate(feature_names("digits")) if name != drop]
    lines = [",".join(names)] + [",".join(str(int(row[i])) for i in keep) for row in digits.data[:count]]
    path.write_text("\n".join(lines) + "\n")
    return path, digits.target[:count]


def test_predict_writes_csv_to_stdout_and_jsonl_to_a_file(trained_run, tmp_path, capsys):
    result = trained_run("digits", data="digits", epochs=2)
    rows, labels = _digits_csv(tmp_path / "new.csv")
    assert main(["predict", str(result.run_dir), "--input", str(rows)]) == 0
    predicted = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["id"] for row in predicted] == [str(i) for i in range(12)]
    assert list(predicted[0]) == ["id", "prediction", *(f"p_{digit}" for digit in range(10))]
    # A model at ~0.95 validation accuracy gets most of these right; the check is that classes are read back as names.
    assert sum(row["prediction"] == str(label) for row, label in zip(predicted, labels)) >= 9
    output = tmp_path / "out" / "predictions.jsonl"
    assert main(["predict", str(result.run_dir), "--input", str(rows), "--output", str(output)]) == 0
    assert f"Wrote 12 predictions to {output}" in capsys.readouterr().err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["prediction"] for line in lines] == [row["prediction"] for row in predicted]


def test_mismatched_input_is_refused_with_one_line(trained_run, tmp_path, capsys):
    result = trained_run("digits", data="digits", epochs=2)
    rows, _ = _digits_csv(tmp_path / "short.csv", drop="pixel_3_4")
    assert main(["predict", str(result.run_dir), "--input", str(rows)]) == 1
    err = capsys.readouterr().err
    assert "lacks 1 column(s) that the model was trained on: 'pixel_3_4'" in err and len(err.strip().splitlines()) == 1
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG")
    assert main(["predict", str(result.run_dir), "--input", str(image)]) == 1
    assert "is not a table" in capsys.readouterr().err
    assert main(["predict", str(result.run_dir), "--input", str(rows), "--output", str(tmp_path / "p.xml")]) == 2
    assert "names no format: end it in .csv or .jsonl" in capsys.readouterr().err
    assert not (tmp_path / "p.xml").exists()


def _houses(path, rows=300, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rooms, area = rng.integers(1, 6, rows), rng.uniform(20, 150, rows)
    price = 100 + 60 * rooms + 2.5 * area + rng.normal(0, 20, rows)  # mean about 500, sd about 125
    path.write_text("rooms,area,price\n" + "".join(f"{r},{a:.2f},{p:.2f}\n" for r, a, p in zip(rooms, area, price)))
    return price


@pytest.mark.slow
def test_regression_targets_are_scaled_in_training_and_read_in_their_own_units(tmp_path, capsys):
    import torch

    from trainwell import load_model
    from trainwell.observe.records import read_run

    prices = _houses(tmp_path / "houses.csv")
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "houses.csv"), "--target", "price", "--epochs", "8", "--out", str(run_dir), "--quiet"]) == 0
    scaling = json.loads((run_dir / "data.json").read_text())["target_scaling"]
    assert 450 < scaling["mean"][0] < 550 and 100 < scaling["std"][0] < 150
    run = read_run(run_dir)
    assert run.run_info["target_scaling"] == scaling
    best = min(run.epochs, key=lambda row: row["val_loss"])
    # The loss is on the standard scale the model learns; the errors are in the prices' units.
    assert best["val_loss"] < 0.2 and 10 < best["val_mae"] < 40 and best["val_rmse"] > best["val_mae"]

    assert main(["eval", str(run_dir)]) == 0
    evaluated = json.loads((run_dir / "eval-val.json").read_text())["metrics"]
    assert evaluated["mae"] == pytest.approx(best["val_mae"], rel=1e-4)
    assert evaluated["loss"] == pytest.approx(best["val_loss"], rel=1e-4)

    (tmp_path / "new.csv").write_text("\n".join((tmp_path / "houses.csv").read_text().splitlines()[:21]) + "\n")
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "new.csv")]) == 0
    predicted = [float(row["prediction"]) for row in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert sum(abs(p - t) for p, t in zip(predicted, prices[:20])) / 20 < 40  # prices, not standardised values
    loaded = load_model(run_dir)
    standardised = loaded.model(loaded.prepare([{"rooms": 3, "area": 80.0}])).item()
    assert loaded.predict([{"rooms": 3, "area": 80.0}]).values.item() == pytest.approx(
        standardised * scaling["std"][0] + scaling["mean"][0], rel=1e-5
    )
    assert isinstance(loaded.predict(torch.zeros(1, 2)).values, torch.Tensor)
