import numpy as np
import pytest
import torch

from trainwell import ConfigError, DataError
from trainwell.data import load

Image = pytest.importorskip("PIL.Image")


def write_folder(root, classes=("cat", "dog", "fox"), per_class=6, size=(12, 10), mode="RGB", seed=0):
    """root/<class>/<i>.png: each class tints its own channel; sizes vary to exercise resizing."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            height, width = size[0] + i % 3, size[1]
            pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
            pixels[..., index % 3] = 255
            image = Image.fromarray(pixels)
            image.convert(mode).save(folder / f"{i}.{'jpg' if i == 0 else 'png'}")
    return root


def test_image_folder_is_resized_split_and_standardised_per_channel(tmp_path):
    splits = load(write_folder(tmp_path / "pets"), image_size=8, seed=0)
    info = splits.info
    assert info.class_names == ["cat", "dog", "fox"] and info.input_shape == (3, 8, 8)
    assert splits.train[0].shape == (14, 3, 8, 8) and splits.val[0].shape == (4, 3, 8, 8) and splits.test is None
    assert info.preprocessing["image_size"] == [8, 8] and info.preprocessing["channels"] == 3
    assert len(info.normalization["mean"]) == 3
    per_channel = splits.train[0].mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel, torch.zeros(3), atol=1e-5)
    assert sorted(torch.bincount(splits.val[1]).tolist()) == [1, 1, 2]


def test_without_image_size_the_first_image_sets_the_size_and_grayscale_stays_one_channel(tmp_path):
    splits = load(write_folder(tmp_path / "gray", mode="L"))
    assert splits.info.input_shape == (1, 12, 10)


def test_augmentation_is_applied_to_training_batches_only(tmp_path):
    splits = load(write_folder(tmp_path / "pets", per_class=10), image_size=8, augment=True)
    assert splits.info.preprocessing["augment"] == {"flip": True, "crop_padding": 1}
    train_loader, val_loader = splits.loaders(batch_size=64)
    train_batch, _ = next(iter(train_loader))
    order = torch.randperm(len(splits.train[0]), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(train_batch, splits.train[0][order])  # augmented
    assert torch.equal(next(iter(val_loader))[0], splits.val[0])  # never augmented
    plain_train, _ = load(write_folder(tmp_path / "pets", per_class=10), image_size=8).loaders(batch_size=64)
    assert torch.equal(next(iter(plain_train))[0], splits.train[0][order])


def test_undecodable_image_is_an_error_naming_it_or_skipped_with_a_count(tmp_path, caplog):
    root = write_folder(tmp_path / "pets")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"dog/broken.png' could not be decoded as an image .*bad_images='skip'"):
        load(root)
    splits = load(root, bad_images="skip")
    assert len(splits.train[1]) + len(splits.val[1]) == 18
    assert "Skipped 1 of 19 image(s)" in caplog.text


def test_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):  # a wrong path is an option mistake (exit 2)
        load(tmp_path / "absent" / "")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="has no sub-folders"):
        load(tmp_path / "flat")
    root = write_folder(tmp_path / "pets")
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder '.*emu' has no images"):
        load(root)


def test_a_class_with_a_single_image_cannot_be_stratified(tmp_path):
    root = write_folder(tmp_path / "pets")
    write_folder(root, classes=("emu",), per_class=1)
    with pytest.raises(DataError, match=r"class 'emu' \(label 2\) has a single example"):
        load(root)


def test_bad_image_options(tmp_path):
    root = write_folder(tmp_path / "pets")
    with pytest.raises(ConfigError, match="bad_images='ignore' is not a valid choice"):
        load(root, bad_images="ignore")
    with pytest.raises(ConfigError, match="image_size=0 is invalid"):
        load(root, image_size=0)
    with pytest.raises(ConfigError, match="target='y' does not apply to images data"):
        load(root, target="y")


def test_a_folder_of_a_single_class_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"the image folder '.*pets' holds a single class \('cat'\).* root/<class>/\*.png"):
        load(write_folder(tmp_path / "pets", classes=("cat",)))
