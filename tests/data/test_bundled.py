import pytest
import torch

from trainwell import DataError
from trainwell.data import load_bundled


@pytest.mark.parametrize(("name", "classes", "features"), [("digits", 10, 64), ("iris", 3, 4), ("wine", 3, 13), ("breast_cancer", 2, 30)])
def test_bundled_datasets_load_split_and_standardise(name, classes, features):
    splits = load_bundled(name)
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    assert splits.info.num_classes == classes and splits.info.input_shape == (features,)
    assert len(val_y) == pytest.approx(0.2 * (len(train_y) + len(val_y)), abs=1)
    assert val_x.shape == (len(val_y), features) and train_x.shape == (len(train_y), features)
    # Standardised with the training split's statistics only.
    assert torch.allclose(train_x.mean(0), torch.zeros(features), atol=1e-4)
    assert len(splits.info.normalization["mean"]) == features


def test_split_is_stratified_and_reproducible():
    a, b = load_bundled("iris", seed=1), load_bundled("iris", seed=1)
    assert torch.equal(a.val[1], b.val[1])
    assert torch.bincount(a.val[1]).tolist() == [10, 10, 10]
    assert not torch.equal(load_bundled("iris", seed=2).val[0], a.val[0])


def test_unknown_name_and_bad_fraction_are_refused():
    with pytest.raises(DataError, match="data='mnist' is not a bundled dataset"):
        load_bundled("mnist")
    with pytest.raises(DataError, match="val_fraction=1.5"):
        load_bundled("iris", val_fraction=1.5)


def test_digits_as_images_are_the_same_standardised_pixels():
    flat, images = load_bundled("digits"), load_bundled("digits", as_images=True)
    assert images.info.input_shape == (1, 8, 8) and images.train[0].shape[1:] == (1, 8, 8)
    assert torch.equal(images.train[0].flatten(1), flat.train[0])
    with pytest.raises(DataError, match="as_images=True is only for data='digits'"):
        load_bundled("iris", as_images=True)


def test_diabetes_is_a_regression_with_standardised_targets():
    splits = load_bundled("diabetes", seed=0)
    info = splits.info
    assert (info.task, info.input_shape, info.num_outputs) == ("regression", (10,), 1)
    assert len(splits.train[1]) + len(splits.val[1]) == 442
    assert abs(splits.train[1].mean().item()) < 1e-5 and 140 < info.target_scaling["mean"][0] < 165


def test_a_last_training_batch_of_one_sample_is_dropped():
    # 353 training rows in batches of 16 would end each epoch with a single sample, which BatchNorm cannot train on.
    train_loader, val_loader = load_bundled("diabetes", seed=0).loaders(batch_size=16)
    assert len(splits_sizes := [len(y) for _, y in train_loader]) == 22 and set(splits_sizes) == {16}
    assert sum(len(y) for _, y in val_loader) == 89
    assert train_loader.target_scaling is not None and val_loader.target_scaling is train_loader.target_scaling
