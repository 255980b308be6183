import torch

import trainwell
from trainwell.callbacks import SaveDataInfo
from trainwell.data import load, load_data_info


def test_data_json_is_written_into_the_run_directory(tmp_path):
    splits = load("iris")
    callback = SaveDataInfo(splits.info)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    trainwell.fit(model, *splits.loaders(batch_size=32), epochs=1, run_dir=tmp_path / "run", callbacks=[callback], progress=False)
    assert callback.path == tmp_path / "run" / "data.json"
    assert load_data_info(tmp_path / "run") == splits.info


def test_nothing_is_written_without_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = load("iris")
    callback = SaveDataInfo(splits.info)
    model = torch.nn.Linear(4, 3)
    trainwell.fit(model, *splits.loaders(batch_size=32), epochs=1, callbacks=[callback], progress=False)
    assert callback.path is None and list(tmp_path.iterdir()) == []
