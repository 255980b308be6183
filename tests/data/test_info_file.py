import json

import pytest

from trainwell import DataError
from trainwell.data import DATA_INFO_FILE, load, load_data_info, save_data_info


def test_data_info_round_trips_through_json(tmp_path):
    info = load("wine").info
    path = save_data_info(info, tmp_path / "run")
    assert path.name == DATA_INFO_FILE == "data.json"
    stored = json.loads(path.read_text())
    assert stored["format_version"] == 2 and stored["input_shape"] == [13]
    again = load_data_info(tmp_path / "run")
    assert again == info and isinstance(again.input_shape, tuple)
    assert not list((tmp_path / "run").glob("*.tmp*"))


def test_regression_target_scaling_is_saved_and_a_version_1_file_reads_as_unscaled(tmp_path):
    info = load("diabetes").info
    assert load_data_info(save_data_info(info, tmp_path)).target_scaling == info.target_scaling
    assert 140 < info.target_scaling["mean"][0] < 165 and 70 < info.target_scaling["std"][0] < 85
    stored = json.loads((tmp_path / "data.json").read_text())
    del stored["target_scaling"]
    stored["format_version"] = 1  # written before targets were scaled: its model predicts in the targets' units
    (tmp_path / "data.json").write_text(json.dumps(stored))
    assert load_data_info(tmp_path).target_scaling is None


def test_text_vocabulary_is_saved_with_the_run(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [("good one", 1), ("bad one", 0)] * 4))
    info = load(path).info
    assert load_data_info(save_data_info(info, tmp_path)).preprocessing["vocabulary"] == info.preprocessing["vocabulary"]


def test_damaged_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data_info(tmp_path)
    (tmp_path / "data.json").write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON"):
        load_data_info(tmp_path / "data.json")
    (tmp_path / "data.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(DataError, match="format_version=99"):
        load_data_info(tmp_path)
    (tmp_path / "data.json").write_text(json.dumps({"name": "x", "colour": "red"}))
    with pytest.raises(DataError, match=r"unknown fields \['colour'\]"):
        load_data_info(tmp_path)
    (tmp_path / "data.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="is incomplete"):
        load_data_info(tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda info: info.update(input_shape=[100_000_000]), r"input_shape \[100000000\] is out of range"),
        (lambda info: info.update(num_classes="ten"), r"num_classes: Input should be a valid integer \('ten'\)"),
        (lambda info: info.update(num_classes=True), r"num_classes: Input should be a valid integer \(True\)"),
        (lambda info: info["normalization"]["mean"].__setitem__(2, float("nan")), r"normalization\['mean'\]\[2\] is not a finite number"),
        (lambda info: info["normalization"]["std"].__setitem__(0, 0.0), "normalization std holds a value ≤ 0"),
        (lambda info: info.update(class_names=["a"]), "1 class_names for num_classes=3"),
        (lambda info: info.update(vocab_size=10**12), "vocab_size: Input should be less than or equal to 10000000"),
        (lambda info: info.update(task="ranking"), r"task: Input should be 'classification' or 'regression'"),
    ],
    ids=["huge input", "classes as text", "classes as a bool", "NaN statistic", "zero std", "class names", "huge vocabulary", "task"],
)
def test_values_are_range_checked_when_loaded(tmp_path, change, named):
    """A crafted data.json made the model allocate 51 GB, and NaN statistics gave NaN predictions: both refused on load."""
    path = save_data_info(load("iris").info, tmp_path)
    stored = json.loads(path.read_text())
    change(stored)
    path.write_text(json.dumps(stored))
    with pytest.raises(DataError, match=named) as caught:
        load_data_info(path)
    assert str(caught.value).startswith(f"'{path}' is damaged: ") and "Rerun the training" in str(caught.value)


def test_a_data_info_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "data.json").write_bytes(b'{"name": "\xff"}')
    with pytest.raises(DataError, match=r"data info '.*data.json' is not UTF-8 text"):
        load_data_info(tmp_path)
