"""Damaged and crafted files handed to trainwell: one line naming the file and the fix, nothing allocated, nothing run."""

import json
import pickle

import pytest
import torch

import trainwell
from trainwell import ModelError

from .conftest import digits_inputs, last_line

# data.json values that are valid JSON but must never reach the model or the inputs.
DATA_INFO = {
    "an input size of 10^8": (
        lambda info: info.update(input_shape=[100_000_000]),
        "input_shape [100000000] is out of range",
    ),
    "classes as text": (lambda info: info.update(num_classes="ten"), "num_classes: Input should be a valid integer"),
    "a NaN statistic": (
        lambda info: info["normalization"]["mean"].__setitem__(5, float("nan")),
        "normalization['mean'][5] is not a finite number: predictions made with it would all be NaN",
    ),
}


@pytest.mark.parametrize(("change", "named"), DATA_INFO.values(), ids=DATA_INFO.keys())
def test_a_crafted_data_json_is_refused_before_anything_is_built_from_it(
    finished_run, trainwell_command, change, named
):
    info = json.loads((finished_run / "data.json").read_text())
    change(info)
    (finished_run / "data.json").write_text(json.dumps(info))
    inputs = digits_inputs(finished_run.parent / "inputs.csv")
    for command in (["eval", finished_run], ["predict", finished_run, "--input", inputs]):
        status, stderr = trainwell_command(*command)
        line = last_line(stderr)
        assert status == 1 and "Traceback" not in stderr
        assert f"failed: '{finished_run / 'data.json'}' is damaged: {named}" in line
        assert line.endswith("Rerun the training to write it again (or restore the file).")


@pytest.mark.parametrize(
    ("file", "command", "status", "named"),
    [
        ("data.json", ["eval"], 1, "failed: data info '{path}' is not UTF-8 text"),
        ("config.yaml", ["eval"], 2, "error: the run's config '{path}' is not UTF-8 text"),
    ],
)
def test_a_run_file_that_is_not_utf8_is_named(finished_run, trainwell_command, file, command, status, named):
    path = finished_run / file
    path.write_bytes(path.read_bytes().replace(b"digits", b"d\xefgits", 1))
    code, stderr = trainwell_command(*command, finished_run)
    assert code == status and "Traceback" not in stderr
    assert named.format(path=path) in last_line(stderr) and "save it as UTF-8" in last_line(stderr)


def test_a_table_and_a_config_file_that_are_not_utf8_are_named(tmp_path, trainwell_command):
    table = tmp_path / "latin1.csv"
    table.write_bytes("size,colour\n1,café\n2,thé\n".encode("latin-1"))
    status, stderr = trainwell_command(
        "train", "--data", table, "--target", "colour", "--out", tmp_path / "run", "--quiet"
    )
    assert status == 1 and "Traceback" not in stderr
    assert last_line(stderr).startswith(
        f"trainwell train: failed: table '{table}' is not UTF-8 text (it holds the byte 0xe9"
    )
    config = tmp_path / "run.yaml"
    config.write_bytes("data: café\n".encode("latin-1"))
    status, stderr = trainwell_command("train", "--config", config, "--out", tmp_path / "run2")
    assert status == 2 and last_line(stderr).startswith(
        f"trainwell train: error: --config '{config}' is not UTF-8 text"
    )


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


def test_a_checkpoint_crafted_to_run_code_is_refused_by_eval_and_its_payload_never_runs(
    finished_run, trainwell_command, tmp_path, monkeypatch
):
    import hashlib

    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    newest = finished_run / "checkpoints" / "epoch-0002-step-000000046.pt"
    state = torch.load(newest, weights_only=True)
    state["extra"] = _Payload()
    with open(newest, "wb") as file:
        pickle.dump(state, file, protocol=2)  # a manifest that matches, so only safe unpickling stands in the way
    manifest_file = newest.with_name("epoch-0002-step-000000046.manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][newest.name] = {
        "sha256": hashlib.sha256(newest.read_bytes()).hexdigest(),
        "bytes": newest.stat().st_size,
    }
    manifest_file.write_text(json.dumps(manifest))
    status, stderr = trainwell_command("eval", finished_run, "--checkpoint", newest)
    assert status == 1 and "was refused" in last_line(stderr) and "weights_only=True" in last_line(stderr)
    assert not marker.exists()


def test_a_model_on_the_meta_device_is_refused_in_one_line(blob_loaders):
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with pytest.raises(ModelError, match=r"tensors on the meta device .*Give them values first"):
        trainwell.fit(model, *blob_loaders, epochs=1, progress=False)
