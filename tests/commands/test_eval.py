import json

import pytest

from trainwell.cli import main


def test_eval_prints_the_table_and_saves_json_in_the_run_dir(trained_run, capsys):
    result = trained_run("digits", data="digits", epochs=2)
    assert main(["eval", str(result.run_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert (
        "on the val split of 'digits' (also used to pick the best checkpoint, so slightly optimistic): 360 samples"
        in out
    )
    assert "accuracy" in out and "confusion matrix (rows: true class, columns: predicted class)" in out
    saved = json.loads((result.run_dir / "eval-val.json").read_text())
    best = result.best
    assert saved["split"] == "val" and saved["checkpoint"] == result.best_checkpoint.name and saved["samples"] == 360
    assert saved["metrics"]["accuracy"] == pytest.approx(best["val_accuracy"]) and len(saved["per_class"]) == 10


def test_eval_uses_the_test_split_where_the_format_has_one(trained_run, make_mnist_dir, tmp_path, capsys):
    data_dir = make_mnist_dir("mnist-eval", train=300, test=50)
    result = trained_run("mnist-eval", data="mnist", data_dir=data_dir, download=False, epochs=1)
    output = tmp_path / "test-metrics.json"
    assert main(["eval", str(result.run_dir), "--output", str(output)]) == 0
    assert "on the test split of 'mnist': 50 samples" in capsys.readouterr().out
    assert json.loads(output.read_text())["split"] == "test"


def test_eval_on_given_data_and_its_refusals(trained_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    from trainwell.use.tables import feature_names

    result = trained_run("digits", data="digits", epochs=2)
    digits = load_digits()
    rows = tmp_path / "some_digits.csv"
    rows.write_text(
        ",".join([*feature_names("digits"), "target"])
        + "\n"
        + "".join(
            ",".join(str(int(v)) for v in [*row, label]) + "\n"
            for row, label in zip(digits.data[:30], digits.target[:30])
        )
    )
    assert main(["eval", str(result.run_dir), "--data", str(rows)]) == 0
    assert "on 'some_digits.csv'" in capsys.readouterr().out.replace(str(tmp_path) + "/", "")
    assert json.loads((result.run_dir / "eval-some_digits.json").read_text())["samples"] == 30
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("\n".join(line.rsplit(",", 1)[0] for line in rows.read_text().splitlines()) + "\n")
    assert main(["eval", str(result.run_dir), "--data", str(unlabelled)]) == 1
    assert "holds no labels to evaluate against: the table needs a 'target' column" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "does not exist: give a directory written by trainwell train" in capsys.readouterr().err
