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
