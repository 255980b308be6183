import pytest
import torch
from torch import nn

from trainwell import ConfigError, DataError
from trainwell.loop.tasks import IGNORE_INDEX, infer_task, task_of_loss


def test_integer_targets_against_class_logits_are_multiclass():
    task = infer_task("auto", None, torch.randn(8, 4), torch.randint(0, 4, (8,)))
    assert (task.name, task.kind) == ("classification", "multiclass")
    assert isinstance(task.loss_fn, nn.CrossEntropyLoss)


def test_float_targets_are_regression_and_the_loss_decides_first():
    assert infer_task("auto", None, torch.randn(8, 2), torch.randn(8, 2)).name == "regression"
    assert infer_task("auto", nn.L1Loss(), torch.randn(8, 2), torch.randn(8, 2)).loss_fn.__class__ is nn.L1Loss
    assert task_of_loss(nn.NLLLoss()) == "classification" and task_of_loss(lambda o, t: o) is None


def test_sequence_labels_with_padding_are_accepted():
    outputs, targets = torch.randn(2, 5, 7), torch.randint(0, 5, (2, 7))
    targets[0, -2:] = IGNORE_INDEX
    task = infer_task("auto", None, outputs, targets)
    sums = task.metric_sums(outputs, targets)
    assert int(sums["labels"]) == 12


def test_binary_metrics_and_reshape():
    task = infer_task("auto", None, torch.randn(6, 1), torch.tensor([0, 1, 1, 0, 1, 0]))
    assert (task.kind, task.reshape_targets) == ("binary", True)
    outputs = torch.tensor([[2.0], [1.0], [-1.0], [-2.0], [0.5], [0.1]])
    sums = task.metric_sums(outputs, torch.tensor([1, 1, 0, 0, 1, 0]))
    assert task.summarize({k: float(v) for k, v in sums.items()}) == {"val_accuracy": pytest.approx(5 / 6)}


def test_regression_mae():
    task = infer_task("regression", None, torch.zeros(4, 1), torch.zeros(4))
    sums = task.metric_sums(torch.zeros(4, 1), torch.tensor([1.0, -1.0, 2.0, 0.0]))
    assert task.summarize({k: float(v) for k, v in sums.items()}) == {"val_mae": 1.0}


def test_non_tensor_outputs_are_refused_with_the_way_out():
    with pytest.raises(DataError, match="override Trainer.train_step"):
        infer_task("auto", None, {"logits": torch.randn(2, 2)}, torch.zeros(2))


def test_task_contradicting_the_loss():
    with pytest.raises(ConfigError, match="task='classification' contradicts loss_fn=MSELoss"):
        infer_task("classification", nn.MSELoss(), torch.randn(2, 2), torch.randn(2, 2))


def test_class_dimension_mismatch():
    with pytest.raises(DataError, match=r"targets of shape \(4, 3\) do not fit outputs of shape \(4, 5\)"):
        infer_task("auto", None, torch.randn(4, 5), torch.zeros(4, 3, dtype=torch.long))


def test_float_whole_number_labels_against_class_logits_get_the_cast_hint():
    outputs, labels = torch.randn(6, 4), torch.tensor([0.0, 3.0, 1.0, 2.0, 0.0, 1.0])
    with pytest.raises(DataError, match=r"float32 whole numbers \(0, 1, 2, 3\) against outputs with 4 classes.*Cast them to integers \(targets.long\(\)"):
        infer_task("auto", None, outputs, labels)
    # Real values keep the regression advice.
    with pytest.raises(DataError, match="regression needs one output per target value"):
        infer_task("auto", None, outputs, labels + 0.5)
