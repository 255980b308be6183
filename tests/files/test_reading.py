import pytest

from trainwell import ConfigError, DataError
from trainwell.files.reading import read_json, read_text, read_yaml


def test_yaml_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5E-4\nepochs: 10\nname: 1e3x\nmomentum: .9\nbig: 1e+2\n")
    assert read_yaml(path, ConfigError) == {
        "lr": 0.001,
        "weight_decay": 0.0005,
        "epochs": 10,
        "name": "1e3x",
        "momentum": 0.9,
        "big": 100.0,
    }


@pytest.mark.parametrize(
    ("content", "error", "reader", "expected"),
    [
        (
            b"epochs: \xff\n",
            ConfigError,
            read_yaml,
            r"is not UTF-8 text \(it holds the byte 0xff, which UTF-8 cannot decode\)",
        ),
        (b"epochs: [\n", ConfigError, read_yaml, r"is not valid YAML \(.* at line 2, column 1\): fix that line"),
        (b"{not json", DataError, read_json, r"is not valid JSON \(Expecting property name .* at line 1, column 2\)"),
        (b"\xef\xbb\xbfhello", DataError, read_text, None),
    ],
    ids=["not utf-8", "bad yaml", "bad json", "byte-order mark"],
)
def test_a_bad_file_fails_with_one_line_naming_it(tmp_path, content, error, reader, expected):
    path = tmp_path / "file"
    path.write_bytes(content)
    if expected is None:
        assert reader(path, error) == "hello"
        return
    with pytest.raises(error, match=expected) as caught:
        reader(path, error, "the file")
    assert str(caught.value).startswith(f"the file '{path}' ") and "\n" not in str(caught.value)


def test_missing_and_directory_paths_are_named(tmp_path):
    with pytest.raises(DataError, match=f"table '{tmp_path / 'none.csv'}' does not exist"):
        read_text(tmp_path / "none.csv", DataError, "table")
    with pytest.raises(DataError, match=f"table '{tmp_path}' is a directory"):
        read_text(tmp_path, DataError, "table")
