import csv
import io
import json

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
