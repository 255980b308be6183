import csv
import json

import pytest
import torch
from torch import nn

from trainwell import ConfigError, DataError
from trainwell.data.bundled import DataInfo
from trainwell.use.predict import Predictions, output_format, predict_tensor, write_predictions


def test_classification_gives_classes_and_probabilities():
    predictions = Predictions(
        torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 1.0]]), "classification", ["a", "b"], ["x", "y", "z"]
    )
    assert predictions.classes == ["y", "x"] and predictions.labels.tolist() == [1, 0]
    assert torch.allclose(predictions.probabilities.sum(dim=1), torch.ones(2))
    assert torch.allclose(predictions.probabilities[0], torch.softmax(torch.tensor([0.0, 2.0, 0.0]), 0))
    single_logit = Predictions(torch.tensor([[2.0], [-1.0]]), "classification", ["a", "b"], ["no", "yes"])
    assert single_logit.classes == ["yes", "no"]
    assert single_logit.probabilities[0].tolist() == pytest.approx(
        [1 - torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(2.0)).item()]
    )


def test_regression_gives_values_and_refuses_probabilities():
    predictions = Predictions(torch.tensor([[1.5], [-2.0]]), "regression", ["r0", "r1"])
    assert predictions.rows() == [{"id": "r0", "prediction": 1.5}, {"id": "r1", "prediction": -2.0}]
    with pytest.raises(DataError, match="probabilities exist for classification only"):
        _ = predictions.probabilities


def test_csv_and_jsonl_files(tmp_path):
    predictions = Predictions(
        torch.tensor([[0.0, 1.0], [2.0, 0.0]]), "classification", ["img/a.png", "img/b.png"], ["cat", "dog"]
    )
    written = write_predictions(predictions, tmp_path / "out.csv")
    rows = list(csv.DictReader(written.open()))
    assert [row["id"] for row in rows] == ["img/a.png", "img/b.png"] and [row["prediction"] for row in rows] == [
        "dog",
        "cat",
    ]
    assert float(rows[0]["p_dog"]) == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), rel=1e-5)
    lines = [
        json.loads(line) for line in write_predictions(predictions, tmp_path / "out.jsonl").read_text().splitlines()
    ]
    assert lines[1]["prediction"] == "cat" and sum(lines[1]["probabilities"].values()) == pytest.approx(1.0)
    assert write_predictions(predictions, format="csv").startswith("id,prediction,p_cat,p_dog\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.jsonl"]  # no temporary left behind
    several = Predictions(torch.tensor([[1.0, 2.0]]), "regression", ["0"])
    assert write_predictions(several, format="csv") == "id,prediction_0,prediction_1\n0,1,2\n"


def test_unknown_output_formats_are_refused():
    with pytest.raises(
        ConfigError, match=r"output 'p.txt' has the suffix '.txt', which names no format: end it in .csv or .jsonl"
    ):
        output_format(__import__("pathlib").Path("p.txt"))
    with pytest.raises(ConfigError, match=r"format='xml' is not a valid choice"):
        write_predictions(Predictions(torch.zeros(1, 1), "regression", ["0"]), format="xml")


def test_predict_tensor_batches_and_names_a_failing_shape():
    model = nn.Linear(3, 2)
    inputs = torch.randn(10, 3)
    info = DataInfo("x", "classification", (3,), 2, class_names=["a", "b"])
    predictions = predict_tensor(model, inputs, info, batch_size=4)
    assert torch.allclose(predictions.outputs, model(inputs).detach()) and predictions.ids[-1] == "9"
    with pytest.raises(DataError, match=r"the model failed on inputs of shape \(4, 5\)"):
        predict_tensor(model, torch.randn(4, 5), info)
    with pytest.raises(ConfigError, match="batch_size=0 is invalid"):
        predict_tensor(model, inputs, info, batch_size=0)
