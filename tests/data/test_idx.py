import gzip

import numpy as np
import pytest
import torch

from trainwell import DataError
from trainwell.data import load
from trainwell.data.idx import find_split_files, load_idx, read_idx, write_idx, write_idx_split


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip_raw_and_gzip(tmp_path, compress, dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    path = write_idx(tmp_path / "a-idx3", array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    read = read_idx(path)
    assert read.shape == (2, 3, 4) and np.array_equal(read, array)


def test_mnist_from_a_directory_has_train_val_and_test(make_mnist_dir):
    folder = make_mnist_dir(train=300, test=50, compress=False)
    splits = load("mnist", data_dir=folder, val_fraction=0.2, seed=0)
    assert splits.train[0].shape == (240, 1, 28, 28) and splits.val[0].shape == (60, 1, 28, 28)
    assert splits.test[0].shape == (50, 1, 28, 28)
    assert splits.info.num_classes == 10 and splits.info.input_shape == (1, 28, 28)
    # Stratified: every class keeps its share in validation (30 per class in all, 6 held out).
    assert torch.bincount(splits.val[1], minlength=10).tolist() == [6] * 10
    # Statistics from the training split only: it is standardised exactly, the others only nearly.
    assert splits.train[0].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert splits.train[0].std().item() == pytest.approx(1.0, abs=1e-4)
    mean = splits.info.normalization["mean"][0]
    raw_train = torch.from_numpy(read_idx(folder / "train-images-idx3-ubyte")).float() / 255
    assert 0.0 < mean < 1.0 and mean != pytest.approx(raw_train.mean().item(), abs=1e-7)  # not the whole file's
    assert splits.info.class_names == [str(d) for d in range(10)]
    again = load("mnist", data_dir=folder, val_fraction=0.2, seed=0)
    assert torch.equal(again.val[1], splits.val[1]) and torch.equal(again.val[0], splits.val[0])
    assert not torch.equal(load("mnist", data_dir=folder, seed=1).val[0], splits.val[0])


def test_fashion_mnist_reads_the_same_format_with_its_class_names(make_mnist_dir):
    splits = load("fashion-mnist", data_dir=make_mnist_dir("fashion"))
    assert splits.info.class_names[0] == "T-shirt/top" and splits.info.num_classes == 10


def test_any_folder_of_idx_files_with_format_idx(make_mnist_dir):
    folder = make_mnist_dir("mine", train=100, test=20)
    splits = load(str(folder), format="idx")
    assert splits.info.num_classes == 10 and splits.test[0].shape[0] == 20


def test_missing_directory_without_download_names_the_files(tmp_path):
    with pytest.raises(DataError, match=r"lacks 'train-images-idx3-ubyte.gz'.*download=False"):
        load("mnist", data_dir=tmp_path / "nowhere", download=False)


def test_wrong_magic_number_names_the_file(make_mnist_dir):
    folder = make_mnist_dir(compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte' has the magic number 0x1234.*not an IDX file"):
        load("mnist", data_dir=folder, download=False)


def test_unknown_type_code_is_refused(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="type code 0x07"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_body_is_refused(make_mnist_dir, compress):
    folder = make_mnist_dir(compress=False)
    path = folder / "train-images-idx3-ubyte"
    data = path.read_bytes()[:-100]
    if compress:
        path.unlink()
        path = folder / "train-images-idx3-ubyte.gz"
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte(.gz)?' is truncated: its header promises shape \(600, 28, 28\)"):
        load("mnist", data_dir=folder, download=False)


def test_cut_gzip_stream_is_refused(make_mnist_dir):
    folder = make_mnist_dir()
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz' is a damaged gzip file"):
        load("mnist", data_dir=folder, download=False)


def test_images_and_labels_of_different_counts_are_refused(make_mnist_dir):
    folder = make_mnist_dir()
    write_idx_split(folder, "train", np.zeros((50, 28, 28), np.uint8), np.zeros(49, np.uint8))
    with pytest.raises(DataError, match=r"holds 50 images but .*train-labels-idx1-ubyte.gz' holds 49 labels"):
        load("mnist", data_dir=folder, download=False)


def test_label_outside_the_classes_names_its_index(make_mnist_dir):
    folder = make_mnist_dir()
    labels = np.arange(100, dtype=np.uint8) % 10
    labels[37] = 12
    write_idx_split(folder, "test", np.zeros((100, 28, 28), np.uint8), labels)
    with pytest.raises(DataError, match="has label 12 at index 37: expected labels 0 to 9"):
        load("mnist", data_dir=folder, download=False)


def test_a_class_with_one_example_cannot_be_stratified(make_mnist_dir):
    folder = make_mnist_dir()
    labels = np.zeros(40, np.uint8)
    labels[:20] = 1
    labels[5] = 7
    write_idx_split(folder, "train", np.zeros((40, 28, 28), np.uint8), labels)
    with pytest.raises(DataError, match=r"class '7' \(label 7\) has a single example"):
        load("mnist", data_dir=folder, download=False)


def test_raw_file_is_preferred_and_both_names_are_found(make_mnist_dir):
    folder = make_mnist_dir(compress=True)
    assert [p.name for p in find_split_files(folder, "train")] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert find_split_files(folder / "missing", "train") is None


def test_unknown_idx_name_is_refused(tmp_path):
    with pytest.raises(DataError, match="not an IDX dataset"):
        load_idx("kmnist", tmp_path)


def test_labels_of_a_single_class_are_refused_naming_the_folder(tmp_path):
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    write_idx_split(tmp_path / "sevens", "train", images, np.full(20, 7, dtype=np.uint8))
    write_idx_split(tmp_path / "sevens", "test", images[:5], np.full(5, 7, dtype=np.uint8))
    with pytest.raises(DataError, match=r"the training labels of '.*sevens' holds a single class \('7'\)"):
        load(tmp_path / "sevens")
