import math

import pytest
import torch
from torch import nn

from trainwell import ConfigError, DataError
from trainwell.loop.metrics import ValidationMetrics
from trainwell.loop.tasks import IGNORE_INDEX, infer_task, task_of_loss


def _metrics(task, outputs, targets, metrics=None):
    collected = ValidationMetrics(task, metrics)
    collected.update(outputs, targets)
    return collected.compute()


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
    assert (task.class_dim, task.classes) == (1, 5)
    counted = targets != IGNORE_INDEX
    correct = (outputs.argmax(1) == targets)[counted].float().mean().item()
    assert _metrics(task, outputs, targets)["val_accuracy"] == pytest.approx(correct)  # over the 12 labels


def test_binary_metrics_and_reshape():
    task = infer_task("auto", None, torch.randn(6, 1), torch.tensor([0, 1, 1, 0, 1, 0]))
    assert (task.kind, task.reshape_targets) == ("binary", True)
    outputs = torch.tensor([[2.0], [1.0], [-1.0], [-2.0], [0.5], [0.1]])
    values = _metrics(task, outputs, torch.tensor([1, 1, 0, 0, 1, 0]), ["accuracy"])
    assert values == {"val_accuracy": pytest.approx(5 / 6)}


def test_regression_mae():
    task = infer_task("regression", None, torch.zeros(4, 1), torch.zeros(4))
    values = _metrics(task, torch.zeros(4, 1), torch.tensor([1.0, -1.0, 2.0, 0.0]), ["mae"])
    assert values == {"val_mae": 1.0}


def test_non_tensor_outputs_are_refused_with_the_way_out():
    with pytest.raises(DataError, match="override Trainer.train_step"):
        infer_task("auto", None, {"logits": torch.randn(2, 2)}, torch.zeros(2))


def test_task_contradicting_the_loss():
    with pytest.raises(ConfigError, match="task='classification' contradicts loss_fn=MSELoss"):
        infer_task("classification", nn.MSELoss(), torch.randn(2, 2), torch.randn(2, 2))


def test_class_dimension_mismatch():
    with pytest.raises(DataError, match=r"targets of shape \(4, 3\) do not fit outputs of shape \(4, 5\)"):
        infer_task("auto", None, torch.randn(4, 5), torch.zeros(4, 3, dtype=torch.long))


def test_the_class_dimension_may_come_last_as_sequence_models_return_it():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=generator)  # (N, T, C)
    targets = torch.randint(0, 11, (3, 6), generator=generator)
    targets[1, 4:] = IGNORE_INDEX
    last = infer_task("auto", None, logits, targets)
    first = infer_task("auto", None, logits.transpose(1, 2), targets)  # torch's (N, C, T)
    assert (last.class_dim, last.classes, first.class_dim, first.classes) == (-1, 11, 1, 11)
    assert last.loss(logits, targets).item() == pytest.approx(
        first.loss(logits.transpose(1, 2), targets).item(), rel=1e-6
    )
    # A loss of the user's own gets the logits as the model returned them; torch's class-index losses, flattened.
    seen = []
    own = infer_task("auto", lambda o, t: seen.append(o.shape) or o.sum(), logits, targets)
    own.loss(logits, targets)
    assert seen == [logits.shape]
    smoothed = infer_task("auto", nn.CrossEntropyLoss(label_smoothing=0.1), logits, targets)
    expected = nn.functional.cross_entropy(logits.transpose(1, 2), targets, label_smoothing=0.1)
    assert smoothed.loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_shapes_that_fit_both_class_layouts_are_refused_not_guessed():
    with pytest.raises(DataError, match=r"fit both class layouts: 7 classes in dimension 1 .* one more output"):
        infer_task("auto", None, torch.randn(2, 7, 7), torch.randint(0, 7, (2, 7)))
    with pytest.raises(DataError, match=r"\(2, 4\) for classes in dimension 1, or \(2, 5\) for classes last"):
        infer_task("auto", None, torch.randn(2, 5, 4), torch.randint(0, 3, (2, 9)))


def test_one_logit_per_position_is_binary_in_either_layout():
    targets = torch.randint(0, 2, (4, 6))
    assert infer_task("auto", None, torch.randn(4, 6, 1), targets).kind == "binary"
    assert infer_task("auto", None, torch.randn(4, 1, 6), targets).kind == "binary"


class _Tagger(nn.Module):
    """Token in, one logit per class at every position: (N, T, C), or torch's (N, C, T) when ``transpose``."""

    def __init__(self, classes: int, transpose: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head, self.transpose = nn.Embedding(classes, 16), nn.Linear(16, classes), transpose

    def forward(self, tokens):
        logits = self.head(torch.relu(self.embed(tokens)))
        return logits.transpose(1, 2) if self.transpose else logits


def test_class_last_logits_train_with_the_default_step_as_the_permuted_layout_does(one_thread):
    from trainwell import fit
    from trainwell.data import TensorLoader

    classes, generator = 12, torch.Generator().manual_seed(0)
    tokens = torch.randint(0, classes, (320, 8), generator=generator)
    labels = (tokens + 1) % classes  # every position's label: the next class
    labels[:, -2:] = IGNORE_INDEX  # padding

    def run(transpose):
        train = TensorLoader(tokens[:256], labels[:256], batch_size=32, seed=0)
        val = TensorLoader(tokens[256:], labels[256:], batch_size=32, shuffle=False)
        options = {"metrics": ["accuracy", "f1", "top3", "perplexity"], "lr": 1e-2, "seed": 0, "device": "cpu"}
        return fit(_Tagger(classes, transpose), train, val, epochs=3, progress=False, **options).history

    last, first = run(transpose=False), run(transpose=True)  # one thread: both runs' float sums in one order
    columns = ["train_loss", "val_loss", "val_accuracy", "val_f1", "val_top3", "val_perplexity"]
    for row_last, row_first in zip(last, first):
        assert {name: row_last[name] for name in columns} == pytest.approx(
            {name: row_first[name] for name in columns}, rel=1e-5
        )
    assert last[-1]["val_accuracy"] > 0.9 and last[-1]["val_loss"] < last[0]["val_loss"]
    # Perplexity is exp of the mean cross-entropy per (unpadded) label, which the default loss is too.
    assert last[-1]["val_perplexity"] == pytest.approx(math.exp(last[-1]["val_loss"]), rel=1e-5)


def test_float_whole_number_labels_against_class_logits_get_the_cast_hint():
    outputs, labels = torch.randn(6, 4), torch.tensor([0.0, 3.0, 1.0, 2.0, 0.0, 1.0])
    with pytest.raises(DataError, match=r"float32 whole numbers \(0, 1, 2, 3\) against outputs with 4 classes.*Cast them to integers \(targets.long\(\)"):
        infer_task("auto", None, outputs, labels)
    # Real values keep the regression advice.
    with pytest.raises(DataError, match="regression needs one output per target value"):
        infer_task("auto", None, outputs, labels + 0.5)
