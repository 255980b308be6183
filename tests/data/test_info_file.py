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
    assert not list((tmp_path / "run").glob("*.tmp"))


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
