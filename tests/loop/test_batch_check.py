import pytest
import torch

from trainwell import DataError
from trainwell.loop.batch_check import BatchCheck
from trainwell.loop.tasks import IGNORE_INDEX, Task

MULTICLASS = Task("classification", None, "multiclass", classes=3)
BINARY = Task("classification", None, "binary")
REGRESSION = Task("regression", None, "regression")


def _check(task, on_device=False):
    check = BatchCheck(lambda: task, on_device=on_device)
    check.at("train_loader", batch=5, epoch=2)
    return check


@pytest.mark.parametrize(
    ("task", "targets", "named"),
    [
        (MULTICLASS, torch.tensor([0, 2, 3, 1]), "holds the target 3, but the model outputs 3 classes (labels 0 to 2)"),
        (MULTICLASS, torch.tensor([0, -1, 1, 1]), "holds the target -1, but the model outputs 3 classes"),
        (MULTICLASS, torch.tensor([IGNORE_INDEX, -7, 1, 1]), "holds the target -7"),
        (
            BINARY,
            torch.tensor([[0.0], [2.0], [1.0], [0.0]]),
            "holds the target 2, but binary targets must lie in [0, 1]",
        ),
    ],
    ids=["above", "negative", "negative beside the ignore index", "binary"],
)
def test_on_the_host_a_bad_value_is_refused_at_once_naming_the_batch_and_the_value(task, targets, named):
    outputs = torch.zeros(4, 3) if task is MULTICLASS else torch.zeros(4, 1)
    with pytest.raises(DataError) as caught:
        _check(task)(outputs, targets)
    assert str(caught.value).startswith("train_loader batch 5 (epoch 2) ") and named in str(caught.value)


def test_good_batches_pass_unchanged_and_regression_values_are_free():
    targets = torch.tensor([0, IGNORE_INDEX, 2, 1])
    assert _check(MULTICLASS)(torch.zeros(4, 3), targets) is targets
    values = torch.tensor([[1e9], [-5.0]])
    assert _check(REGRESSION)(torch.zeros(2, 1), values) is values


@pytest.mark.parametrize(
    ("task", "outputs", "targets", "named"),
    [
        (
            MULTICLASS,
            torch.zeros(4, 3),
            torch.zeros(2, dtype=torch.long),
            "targets of shape (2,) do not fit outputs of shape (4, 3)",
        ),
        (
            MULTICLASS,
            torch.zeros(4, 3),
            torch.zeros(4),
            "targets are torch.float32: class-index targets must be integers",
        ),
        (REGRESSION, torch.zeros(4, 1), torch.zeros(4, 2), "expected targets of shape (4, 1), as in the first batch"),
    ],
)
def test_a_batch_whose_targets_do_not_fit_is_refused_in_either_mode(task, outputs, targets, named):
    for on_device in (False, True):
        with pytest.raises(DataError, match="train_loader batch 5 .epoch 2.: ") as caught:
            _check(task, on_device)(outputs, targets)
        assert named in str(caught.value)


def test_on_the_device_nothing_is_read_per_step_and_the_first_bad_batch_is_named_at_the_flush():
    check = BatchCheck(lambda: MULTICLASS, on_device=True)
    seen = []
    for batch, targets in enumerate([[0, 1], [1, 2], [0, 5], [4, 1], [2, 2]]):
        check.at("train_loader", batch, epoch=1)
        seen.append(check(torch.zeros(2, 3), torch.tensor(targets)))
        seen.append(check.step_bad)
        check.step_bad = None  # the step runner consumes it
    assert [bool(flag) for flag in seen[1::2]] == [False, False, True, True, False]
    # A bad batch's targets are replaced, so that the loss never sees an out-of-range class index.
    assert seen[4].tolist() == [0, 0] and seen[0].tolist() == [0, 1]
    with pytest.raises(
        DataError, match=r"train_loader batch 2 \(epoch 1\) holds the target 5, but the model outputs 3"
    ):
        check.flush()
    check.flush()  # read and reset: nothing more to say


def test_validation_batches_are_counted():
    check = BatchCheck(lambda: MULTICLASS, on_device=False)
    check.at("val_loader", counting=True)
    check(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"^val_loader batch 1 holds the target 3"):
        check(torch.zeros(2, 3), torch.tensor([3, 1]))


def test_a_model_failing_on_a_reshaped_batch_is_explained():
    check = _check(MULTICLASS)
    check.first_inputs = (8,)
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x7 and 8x16)")
    with pytest.raises(DataError, match=r"one sample \(7,\), while the first batch's was \(8,\)\): mat1 and mat2"):
        check.refuse_if_reshaped(error, torch.zeros(32, 7))
    check.refuse_if_reshaped(error, torch.zeros(32, 8))  # same shape: the model's own error stands
    check.refuse_if_reshaped(torch.OutOfMemoryError("x"), torch.zeros(32, 7))


def test_on_the_device_a_pending_training_verdict_keeps_its_loader_when_validation_follows():
    # val_every_steps off the logging interval: validation starts with a bad train batch still unread.
    check = BatchCheck(lambda: MULTICLASS, on_device=True)
    check.at("train_loader", 7, epoch=2)
    check(torch.zeros(2, 3), torch.tensor([0, 5]))
    check.step_bad = None  # the step runner consumes it
    with pytest.raises(DataError, match=r"^train_loader batch 7 \(epoch 2\) holds the target 5"):
        check.at("val_loader", counting=True)
        check(torch.zeros(2, 3), torch.tensor([0, 1]))
        check.flush()


def test_on_the_device_validation_verdicts_never_reach_the_next_training_step():
    check = BatchCheck(lambda: MULTICLASS, on_device=True)
    check.at("train_loader", 3, epoch=1)
    check(torch.zeros(2, 3), torch.tensor([0, 1]))
    check.step_bad = None  # the step runner consumes it
    check.at("val_loader", counting=True)
    check(torch.zeros(2, 3), torch.tensor([0, 1]))
    check.flush()
    check.at("train_loader", 4, epoch=1)
    assert check.step_bad is None


def test_on_the_host_a_batch_is_read_once(monkeypatch):
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _read=original: reads.append(1) or _read(self))
    check = _check(MULTICLASS)
    check(torch.zeros(4, 3), torch.tensor([0, 2, 1, 1]))
    with pytest.raises(DataError, match="holds the target 3"):
        check(torch.zeros(4, 3), torch.tensor([0, 2, 3, 1]))
    assert len(reads) == 2
