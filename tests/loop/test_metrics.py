import math

import pytest
import torch
from sklearn import metrics as sk

from trainwell.loop.metrics import ValidationMetrics
from trainwell.loop.tasks import IGNORE_INDEX, infer_task


def _collect(outputs, targets, batch=7):
    task = infer_task("auto", None, outputs[:batch], targets[:batch])
    collected = ValidationMetrics(task)
    for start in range(0, len(outputs), batch):
        collected.update(outputs[start : start + batch], targets[start : start + batch])
    return collected, collected.compute()


def test_multiclass_metrics_match_scikit_learn_across_batches():
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(50, 4, generator=generator)
    targets = torch.randint(0, 4, (50,), generator=generator)
    collected, values = _collect(outputs, targets)
    predicted = outputs.argmax(1).numpy()
    assert values["val_f1"] == pytest.approx(sk.f1_score(targets, predicted, average="macro"), abs=1e-6)
    assert values["val_precision"] == pytest.approx(sk.precision_score(targets, predicted, average="macro"), abs=1e-6)
    assert values["val_recall"] == pytest.approx(sk.recall_score(targets, predicted, average="macro"), abs=1e-6)
    assert collected.confusion_matrix == sk.confusion_matrix(targets, predicted, labels=range(4)).tolist()


def test_ignored_labels_do_not_count():
    outputs = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    targets = torch.tensor([0, 1, IGNORE_INDEX])
    collected, values = _collect(outputs, targets)
    assert values["val_f1"] == pytest.approx(1.0)
    assert collected.confusion_matrix == [[1, 0], [0, 1]]


def test_binary_metrics_treat_positive_logits_as_class_1():
    outputs = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    targets = torch.tensor([1, 0, 0, 1, 1])
    collected, values = _collect(outputs, targets)
    predicted = [1, 0, 1, 0, 1]
    assert values["val_f1"] == pytest.approx(sk.f1_score(targets, predicted))
    assert values["val_precision"] == pytest.approx(sk.precision_score(targets, predicted))
    assert collected.confusion_matrix == sk.confusion_matrix(targets, predicted).tolist()


def test_regression_rmse_and_r2_match_scikit_learn():
    generator = torch.Generator().manual_seed(1)
    targets = torch.randn(40, 1, generator=generator)
    outputs = targets + 0.3 * torch.randn(40, 1, generator=generator)
    collected, values = _collect(outputs, targets)
    assert values["val_rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(targets, outputs)), rel=1e-5)
    assert values["val_r2"] == pytest.approx(sk.r2_score(targets, outputs), rel=1e-5)
    assert collected.confusion_matrix is None


def test_nothing_seen_computes_nothing():
    task = infer_task("auto", None, torch.randn(2, 3), torch.tensor([0, 1]))
    assert ValidationMetrics(task).compute() == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_collecting_predictions_never_waits_for_the_gpu():
    outputs, targets = torch.randn(64, 10, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    collected = ValidationMetrics(infer_task("auto", None, outputs, targets))
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            collected.update(outputs, targets)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert collected.compute()["val_f1"] >= 0
