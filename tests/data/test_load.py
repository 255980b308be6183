import numpy as np
import pytest
import torch

from trainwell import ConfigError, DataError
from trainwell.data import BUNDLED, load
from trainwell.data.load import resolve_format


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_names_go_to_load_bundled(name, monkeypatch):
    from trainwell.data import bundled

    calls = []
    real = bundled.load_bundled
    monkeypatch.setattr(bundled, "load_bundled", lambda *args, **kwargs: calls.append((args, kwargs)) or real(*args, **kwargs))
    splits = load(name, val_fraction=0.25, seed=3)
    assert calls == [((name,), {"val_fraction": 0.25, "seed": 3, "as_images": False})]
    assert splits.info.name == name


def test_a_name_added_to_bundled_later_is_dispatched_too(monkeypatch):
    from trainwell.data import bundled

    monkeypatch.setattr(bundled, "BUNDLED", (*bundled.BUNDLED, "sine"))
    assert resolve_format("sine", "auto") == "bundled"


def test_formats_are_told_from_names_and_paths(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n")
    (tmp_path / "t.JSONL").write_text("")
    (tmp_path / "images").mkdir()
    assert resolve_format("mnist", "auto") == "idx" and resolve_format("fashion-mnist", "auto") == "idx"
    assert resolve_format(tmp_path / "t.csv", "auto") == "tabular"
    assert resolve_format(tmp_path / "t.JSONL", "auto") == "text"
    assert resolve_format(tmp_path / "images", "auto") == "images"
    assert resolve_format(tmp_path / "t.csv", "text") == "text"
    (tmp_path / "t.xyz").write_text("")
    with pytest.raises(DataError, match="suffix '.xyz', which does not tell its format"):
        resolve_format(tmp_path / "t.xyz", "auto")


def test_a_folder_of_idx_files_is_recognised_by_their_names(make_mnist_dir, tmp_path):
    folder = make_mnist_dir("digits-idx", train=50, test=10)
    assert resolve_format(folder, "auto") == "idx"
    splits = load(folder, val_fraction=0.2)
    assert splits.info.input_shape == (1, 28, 28) and splits.info.preprocessing["format"] == "idx"
    assert splits.test is not None and len(splits.test[1]) == 10  # the t10k files: the test split
    (tmp_path / "cats").mkdir()
    assert resolve_format(tmp_path / "cats", "auto") == "images"


def test_a_near_miss_of_a_dataset_name_gets_a_suggestion():
    with pytest.raises(ConfigError, match="data='digit' is not a known dataset. Did you mean 'digits'?"):
        load("digit")


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(ConfigError, match="data='cifar' is not a known dataset: expected one of 'digits'"):
        load("cifar")
    with pytest.raises(ConfigError, match=r"data '.*nothing.csv' does not exist"):
        load(tmp_path / "nothing.csv", target="y")
    with pytest.raises(ConfigError, match="format='xml' is not a valid choice"):
        load("iris", format="xml")
    with pytest.raises(DataError, match="val_fraction=1.0 is out of range"):
        load("iris", val_fraction=1.0)


def test_options_of_other_formats_are_refused():
    with pytest.raises(ConfigError, match="target='y' does not apply to bundled data"):
        load("iris", target="y")
    with pytest.raises(ConfigError, match="data_dir='d' does not apply to bundled data"):
        load("iris", data_dir="d")


def test_arrays_are_split_stratified_and_standardised():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(100, 3, generator=generator) * 5 + 2
    targets = torch.arange(100) % 4
    splits = load((inputs, targets), seed=0)
    assert splits.info.num_classes == 4 and splits.info.input_shape == (3,)
    assert torch.bincount(splits.val[1]).tolist() == [5, 5, 5, 5]
    assert torch.allclose(splits.train[0].mean(0), torch.zeros(3), atol=1e-5)
    regression = load((inputs.numpy(), np.linspace(0, 1, 100)))
    assert regression.info.task == "regression" and regression.info.num_outputs == 1


def test_nan_or_inf_in_the_inputs_names_the_sample():
    inputs = torch.zeros(10, 4)
    inputs[7, 2] = float("nan")
    with pytest.raises(DataError, match=r"the inputs array has a non-finite value \(nan\) at row 7, column 2: 1 sample\(s\) hold NaN or inf"):
        load((inputs, torch.arange(10) % 2))


def test_arrays_of_different_counts_are_refused():
    with pytest.raises(DataError, match="data has 10 inputs but 9 targets"):
        load((torch.zeros(10, 2), torch.zeros(9, dtype=torch.long)))


@pytest.mark.slow
def test_loaded_splits_train_with_fit(make_mnist_dir):
    import trainwell
    from trainwell.models import MLP

    splits = load("mnist", data_dir=make_mnist_dir(train=300, test=50))
    train_loader, val_loader = splits.loaders(batch_size=32, seed=0)
    torch.manual_seed(0)
    result = trainwell.fit(MLP([784, 32, 10]), train_loader, val_loader, epochs=3, lr=3e-3, progress=False)
    assert result.best["val_accuracy"] >= 0.9


def test_arrays_of_a_single_class_are_refused():
    with pytest.raises(DataError, match=r"the targets array holds a single class \('3'\)"):
        load((torch.randn(20, 2), torch.full((20,), 3)))


def test_float_whole_number_targets_are_regression_with_a_hint_to_cast(caplog):
    inputs, labels = torch.randn(40, 2), (torch.arange(40) % 3).float()
    with caplog.at_level("WARNING", logger="trainwell"):
        splits = load((inputs, labels))
    assert splits.info.task == "regression"
    assert "float whole numbers of 3 values" in caplog.text and "cast them to integers (targets.long()" in caplog.text
    assert load((inputs, labels.long())).info.task == "classification"


def test_regression_arrays_are_standardised_and_keep_their_scaling():
    targets = torch.linspace(100.0, 500.0, 50).reshape(50, 1)
    splits = load((torch.randn(50, 3), targets), seed=0)
    scaling = splits.info.target_scaling
    assert splits.train[1].mean().item() == pytest.approx(0.0, abs=1e-5) and 100 < scaling["mean"][0] < 500
    assert torch.cat([splits.train[1], splits.val[1]]).shape == (50, 1)
