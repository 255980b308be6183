import pytest
import yaml

from trainwell import ConfigError
from trainwell.files.atomic import write_yaml
from trainwell.files.rundir import prepare_run_dir


def test_creates_the_directory_and_config(tmp_path):
    run_dir = prepare_run_dir(tmp_path / "a" / "b", {"epochs": 3})
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {"epochs": 3}


def test_refuses_a_file_and_an_existing_run(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare_run_dir(tmp_path / "file", {})
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics.jsonl\)"):
        prepare_run_dir(tmp_path / "old", {})


def test_write_yaml_leaves_no_temporary_file(tmp_path):
    write_yaml(tmp_path / "c.yaml", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def test_a_resumed_run_may_reuse_its_directory(tmp_path):
    prepare_run_dir(tmp_path, {"epochs": 3})
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="pass resume='auto'"):
        prepare_run_dir(tmp_path, {"epochs": 5})
    prepare_run_dir(tmp_path, {"epochs": 5}, resuming=True)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"epochs": 5}
    assert (tmp_path / "metrics.jsonl").read_text() == "{}\n"
