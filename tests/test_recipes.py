import pytest

from trainwell import ConfigError
from trainwell.recipes import RunConfig, build_data, build_model, default_run_dir, run


def test_run_config_adds_data_and_model_to_the_training_options():
    config = RunConfig()
    assert (config.data, config.model, config.batch_size, config.hidden) == ("digits", "mlp", 64, [256, 128])
    assert (config.schedule, config.lr, config.seed, config.reference_batch_size) == ("onecycle", 1e-2, 0, 64)


def test_errors_use_the_names_the_user_typed():
    with pytest.raises(ConfigError, match=r"^--epochs=0 is out of range"):
        RunConfig.from_options({"epochs": 0}, option_names={"epochs": "--epochs"})
    with pytest.raises(ConfigError, match=r"^'hiden' is not a known option. Did you mean 'hidden'"):
        RunConfig.from_options({"hiden": [4]})


def test_model_sizes_come_from_the_data():
    config = RunConfig(data="iris", hidden=[8])
    splits = build_data(config)
    model = build_model(config, splits.info)
    assert model.dims == [4, 8, 3]


def test_unknown_data_and_model_are_refused():
    with pytest.raises(ConfigError, match="data='cifar' is not a known dataset"):
        build_data(RunConfig(data="cifar"))
    with pytest.raises(ConfigError, match="model='resnet' is not a known model"):
        build_model(RunConfig(model="resnet"), None)


def test_run_trains_the_recipe(tmp_path):
    result = run(RunConfig(data="iris", epochs=30, batch_size=16, run_dir=tmp_path / "run", progress=False))
    assert result.best["val_accuracy"] >= 0.9
    assert "hidden" in (tmp_path / "run" / "config.yaml").read_text()


def test_default_run_dir_never_reuses_a_directory(tmp_path):
    first = default_run_dir(tmp_path)
    first.mkdir()
    assert default_run_dir(tmp_path) != first


def test_build_data_passes_the_data_options_to_load(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("x,colour,y\n" + "".join(f"{i},{'' if i % 5 == 0 else 'red'},{i % 2}\n" for i in range(40)))
    splits = build_data(RunConfig(data=str(table), target="y", missing="drop", val_fraction=0.25))
    assert splits.info.preprocessing["missing"] == "drop"
    assert len(splits.train[1]) + len(splits.val[1]) == 32 and len(splits.val[1]) == 8


def test_mlp_recipe_refuses_token_ids(tmp_path):
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n' * 3)
    config = RunConfig(data=str(texts))
    with pytest.raises(ConfigError, match="its inputs are token ids, which need a model with an embedding"):
        build_model(config, build_data(config).info)


def test_run_saves_data_json_and_checks_labels_against_the_model(tmp_path, monkeypatch):
    import json

    from trainwell import DataError, recipes
    from trainwell.models import MLP

    run(RunConfig(data="iris", epochs=1, run_dir=tmp_path / "run", progress=False))
    assert json.loads((tmp_path / "run" / "data.json").read_text())["class_names"] == ["setosa", "versicolor", "virginica"]
    monkeypatch.setattr(recipes, "build_model", lambda config, info: MLP([4, 8, 2]))
    with pytest.raises(DataError, match="has label 2 at index .* but the model has 2 outputs"):
        run(RunConfig(data="iris", epochs=1, run_dir=tmp_path / "run2", progress=False))
    assert not (tmp_path / "run2").exists()


def test_run_config_data_fields_are_validated():
    with pytest.raises(ConfigError, match="image_size=0 is out of range"):
        RunConfig(image_size=0)
    with pytest.raises(ConfigError, match="bad_images='ignore' is not a valid choice"):
        RunConfig(bad_images="ignore")
    assert RunConfig().to_yaml_dict()["data_dir"] is None
