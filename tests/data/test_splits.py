import numpy as np
import pytest
import torch

from trainwell import DataError
from trainwell.data import check_labels_fit, load
from trainwell.data.bundled import DataInfo, Splits
from trainwell.data.splits import check_finite, split_indices, standardize


def test_split_is_stratified_reproducible_and_disjoint():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, val = split_indices(labels, 100, 0.2, seed=4)
    again = split_indices(labels, 100, 0.2, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert set(train).isdisjoint(val) and len(train) + len(val) == 100
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]
    assert not np.array_equal(val, split_indices(labels, 100, 0.2, seed=5)[1])


def test_tiny_classes_and_tiny_data_are_refused():
    with pytest.raises(DataError, match=r"class 'b' \(label 1\) has a single example in the data"):
        split_indices(np.array([0, 0, 1, 2, 2]), 5, 0.4, 0, ["a", "b", "c"])
    with pytest.raises(DataError, match="too few to hold out"):
        split_indices(np.array([0, 0, 1, 1]), 4, 0.9, 0)
    with pytest.raises(DataError, match="at least 2 are needed"):
        split_indices(None, 1, 0.2, 0)


def test_standardize_uses_the_training_statistics_only():
    train = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    val = torch.tensor([[100.0, 7.0]])
    (_, scaled_val), stats = standardize(train, val)
    assert stats["mean"] == [1.0, 5.0] and stats["std"][1] == 1.0  # a constant feature is not divided by 0
    assert scaled_val.tolist() == [[pytest.approx(99 / 2**0.5), 2.0]]
    images = torch.rand(6, 3, 4, 4)
    (scaled,), stats = standardize(images)
    assert len(stats["mean"]) == 3 and torch.allclose(scaled.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6)


def test_check_finite_names_column_or_position():
    check_finite(torch.ones(3, 2), "x")
    check_finite(torch.ones(3, dtype=torch.long), "x")
    with pytest.raises(DataError, match=r"x has a non-finite value \(-inf\) at row 2, column 'b'"):
        check_finite(torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, float("-inf")]]), "x", ["a", "b"])
    images = torch.zeros(4, 1, 2, 2)
    images[3, 0, 1, 0] = float("nan")
    with pytest.raises(DataError, match=r"at row 3, position \(0, 1, 0\)"):
        check_finite(images, "images")


def test_labels_that_do_not_match_the_model_outputs_are_refused():
    splits = load("iris")
    check_labels_fit(splits, 3)
    with pytest.raises(DataError, match=r"the train split of 'iris' has label 2 at index \d+, but the model has 2 outputs .* Give the model's last layer 3 outputs"):
        check_labels_fit(splits, 2)
    regression = Splits(
        train=(torch.zeros(4, 2), torch.zeros(4)), val=(torch.zeros(2, 2), torch.zeros(2)), info=DataInfo("r", "regression", (2,), None)
    )
    check_labels_fit(regression, 1)
    with pytest.raises(DataError, match="regression task with one target, but the model has 3 outputs"):
        check_labels_fit(regression, 3)


def test_one_logit_fits_binary_labels():
    binary = load("breast_cancer")
    check_labels_fit(binary, 1)
    check_labels_fit(binary, 2)
