import json

import pytest
import torch
from sklearn import metrics as sk
from torch import nn

import trainwell
from trainwell import DataError, ModelError
from trainwell.data import TensorLoader


def _epochs(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record for record in records if record["event"] == "epoch"]


@pytest.mark.slow
def test_evaluate_on_digits_reproduces_the_best_epochs_validation(trained_run):
    """A finished digits run, evaluated on its validation split with its best weights, gives exactly the
    numbers training logged for its best epoch (and its confusion matrix)."""
    from trainwell.recipes import RunConfig, build_data

    result = trained_run("digits", data="digits", epochs=2)
    loaded = trainwell.load_model(result.run_dir)
    splits = build_data(RunConfig(data="digits"))
    evaluation = trainwell.evaluate(loaded.model, TensorLoader(*splits.val, batch_size=100, shuffle=False))
    best = min(_epochs(result.run_dir), key=lambda row: row["val_loss"])
    for name in ("loss", "accuracy", "f1", "precision", "recall"):
        assert evaluation.metrics[name] == pytest.approx(best[f"val_{name}"], abs=1e-6), name
    assert evaluation.samples == 360 and evaluation.task == "classification"
    assert evaluation.confusion_matrix == json.loads((result.run_dir / "confusion.json").read_text())["matrix"]


def test_per_class_scores_and_confusion_matrix_match_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(90, 4, generator=generator)
    targets = torch.randint(0, 3, (90,), generator=generator)
    model = nn.Linear(4, 3)
    evaluation = trainwell.evaluate(
        model, TensorLoader(inputs, targets, batch_size=16, shuffle=False), class_names=["a", "b", "c"]
    )
    predicted = model(inputs).argmax(1).detach().numpy()
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        targets, predicted, labels=[0, 1, 2], zero_division=0
    )
    assert [row["class"] for row in evaluation.per_class] == ["a", "b", "c"]
    assert [row["precision"] for row in evaluation.per_class] == pytest.approx(precision.tolist(), abs=1e-6)
    assert [row["recall"] for row in evaluation.per_class] == pytest.approx(recall.tolist(), abs=1e-6)
    assert [row["f1"] for row in evaluation.per_class] == pytest.approx(f1.tolist(), abs=1e-6)
    assert [row["support"] for row in evaluation.per_class] == support.tolist()
    assert evaluation.confusion_matrix == sk.confusion_matrix(targets, predicted, labels=[0, 1, 2]).tolist()
    assert evaluation.metrics["accuracy"] == pytest.approx(sk.accuracy_score(targets, predicted))
    table = evaluation.table()
    assert "confusion matrix (rows: true class, columns: predicted class)" in table and "support" in table


def test_regression_reports_mae_rmse_and_r2():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(40, 3, generator=generator)
    targets = inputs.sum(dim=1, keepdim=True) + 0.1 * torch.randn(40, 1, generator=generator)
    model = nn.Linear(3, 1)
    evaluation = trainwell.evaluate(model, TensorLoader(inputs, targets, batch_size=16, shuffle=False))
    predicted = model(inputs).detach().numpy().ravel()
    truth = targets.numpy().ravel()
    assert evaluation.task == "regression" and evaluation.per_class is None and evaluation.confusion_matrix is None
    assert evaluation.metrics["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted), rel=1e-5)
    assert evaluation.metrics["rmse"] == pytest.approx(sk.mean_squared_error(truth, predicted) ** 0.5, rel=1e-5)
    assert evaluation.metrics["r2"] == pytest.approx(sk.r2_score(truth, predicted), rel=1e-5)
    assert evaluation.metrics["loss"] == pytest.approx(sk.mean_squared_error(truth, predicted), rel=1e-5)


def test_the_result_does_not_depend_on_batching_and_the_model_keeps_its_mode(blobs, classifier):
    inputs, targets = blobs
    classifier.train()
    small = trainwell.evaluate(classifier, TensorLoader(inputs, targets, batch_size=7, shuffle=False))
    whole = trainwell.evaluate(classifier, [(inputs, targets)])
    assert small.metrics == pytest.approx(whole.metrics, abs=1e-6)  # float32 batch means round differently
    assert classifier.training


def test_the_json_record_is_plain_and_written_atomically(tmp_path, blobs, classifier):
    evaluation = trainwell.evaluate(classifier, [blobs], class_names=["x", "y", "z"])
    evaluation.source = {"split": "val"}
    path = evaluation.save(tmp_path / "eval.json")
    saved = json.loads(path.read_text())
    assert saved["split"] == "val" and saved["class_names"] == ["x", "y", "z"] and saved["samples"] == 300
    assert saved["metrics"]["accuracy"] == pytest.approx(evaluation.metrics["accuracy"])
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_bad_input_is_refused_clearly(blobs, classifier):
    inputs, targets = blobs
    with pytest.raises(ModelError, match="expected a torch.nn.Module"):
        trainwell.evaluate(nn.Linear, [blobs])
    with pytest.raises(DataError, match="yielded no batches"):
        trainwell.evaluate(classifier, [])
    with pytest.raises(DataError, match="contain the label 7, but the model outputs 3 classes"):
        trainwell.evaluate(classifier, [(inputs, torch.full_like(targets, 7))])
    with pytest.raises(
        DataError, match=r"the model failed on a batch of the loader \(inputs: a tensor of shape \(300, 5\)\)"
    ):
        trainwell.evaluate(classifier, [(torch.randn(300, 5), targets)])


def test_chosen_metrics_are_computed_and_nothing_else(blobs, classifier):
    evaluation = trainwell.evaluate(classifier, [blobs], metrics=["accuracy", "top2"], class_names=["x", "y", "z"])
    inputs, targets = blobs
    top2 = classifier(inputs).topk(2, dim=1).indices
    assert list(evaluation.metrics) == ["loss", "accuracy", "top2"]
    assert evaluation.metrics["top2"] == pytest.approx((top2 == targets[:, None]).any(1).float().mean().item())
    assert evaluation.per_class is None and evaluation.confusion_matrix is None
    assert evaluation.class_names == ["x", "y", "z"]
    with pytest.raises(trainwell.ConfigError, match="Did you mean 'accuracy'"):
        trainwell.evaluate(classifier, [blobs], metrics=["acuracy"])
    with pytest.raises(trainwell.ConfigError, match="'top3' looks among the top 3 of 3 classes"):
        trainwell.evaluate(classifier, [blobs], metrics=["top3"])


def test_many_classes_give_accuracy_by_default_and_per_class_scores_when_asked():
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 150)
    inputs, targets = torch.randn(64, 4, generator=generator), torch.randint(0, 150, (64,), generator=generator)
    plain = trainwell.evaluate(model, [(inputs, targets)])
    assert list(plain.metrics) == ["loss", "accuracy"] and plain.per_class is None and plain.confusion_matrix is None
    asked = trainwell.evaluate(model, [(inputs, targets)], metrics=["accuracy", "f1"])
    predicted = model(inputs).argmax(1).detach().numpy()
    assert asked.metrics["f1"] == pytest.approx(sk.f1_score(targets, predicted, average="macro"), abs=1e-6)
    assert len(asked.per_class) == 150 and asked.confusion_matrix is None
    assert [row["support"] for row in asked.per_class] == torch.bincount(targets, minlength=150).tolist()


def test_a_label_beyond_the_classes_in_a_later_batch_is_named():
    inputs, targets = torch.randn(12, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 5, 0, 1, 2])
    with pytest.raises(DataError, match=r"^the loader batch 2 holds the target 5, but the model outputs 3 classes"):
        trainwell.evaluate(torch.nn.Linear(2, 3), TensorLoader(inputs, targets, batch_size=4, shuffle=False))
