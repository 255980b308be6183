import math

import pytest
import torch

from trainwell import ConfigError, TrainConfig, TrainwellError
from trainwell.option_errors import describe_allowed


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": 1001}, "epochs=1001"),
        ({"epochs": 2.5}, "epochs=2.5"),
        ({"epochs": True}, "epochs=True"),
        ({"lr": 0}, "lr=0"),
        ({"lr": 5}, "lr=5"),
        ({"lr": math.nan}, "lr=nan"),
        ({"lr": math.inf}, "lr=inf"),
        ({"precision": "fp8"}, "precision='fp8'"),
        ({"schedule": "linear"}, "schedule='linear'"),
        ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0"),
        ({"device": "gpu"}, "device='gpu'"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"early_stopping_patience": 0}, "early_stopping_patience=0"),
        ({"max_rollbacks": -1}, "max_rollbacks=-1"),
        ({"rollback_lr_factor": 1.0}, "rollback_lr_factor=1.0"),
        ({"loss_spike_factor": 0.5}, "loss_spike_factor=0.5"),
        ({"checkpoint_every_steps": 0}, "checkpoint_every_steps=0"),
        ({"checkpoint_keep_last": 0}, "checkpoint_keep_last=0"),
        ({"retry_attempts": 0}, "retry_attempts=0"),
        ({"retry_base_delay_s": -1.0}, "retry_base_delay_s=-1.0"),
        ({"save_checkpoints": "yes"}, "save_checkpoints='yes'"),
    ],
)
def test_invalid_values_name_the_option_the_value_and_what_is_allowed(options, named):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**options)
    message = str(caught.value)
    assert message.startswith(named)
    assert "expected" in message
    assert isinstance(caught.value, TrainwellError) and isinstance(caught.value, ValueError)


def test_range_message_states_the_bounds():
    with pytest.raises(ConfigError, match=r"epochs=0 is out of range: expected an integer from 1 to 1000\."):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"lr=5 is out of range: expected a number from 1e-06 to 1\."):
        TrainConfig(lr=5)


def test_unknown_option_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"'epoch' is not a known option\. Did you mean 'epochs'\?"):
        TrainConfig(epoch=3)


def test_unknown_option_without_close_match_lists_known_options():
    with pytest.raises(ConfigError, match="Known options: .*epochs"):
        TrainConfig(zzzz=1)


def test_invalid_choice_suggests_the_closest_choice():
    with pytest.raises(ConfigError, match="Did you mean 'adamw'"):
        TrainConfig(optimizer="adam")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        TrainConfig(epochs=0, lr=5, precision="fp8")
    lines = str(caught.value).splitlines()
    assert [line.split("=")[0] for line in lines] == ["epochs", "lr", "precision"]


def test_assignment_is_validated_too():
    config = TrainConfig()
    with pytest.raises(ConfigError, match="epochs=0"):
        config.epochs = 0


def test_defaults_are_the_documented_best_practices():
    config = TrainConfig()
    assert (config.epochs, config.lr, config.weight_decay, config.optimizer) == (10, 1e-3, 0.01, "adamw")
    assert (config.max_grad_norm, config.precision, config.early_stopping_patience) == (1.0, "auto", 5)
    assert config.schedule == "constant" and config.warmup_fraction == 0.0


def test_warmup_follows_the_schedule_unless_set():
    assert TrainConfig(schedule="onecycle").warmup_fraction == 0.3
    assert TrainConfig(schedule="onecycle", warmup_fraction=0.1).warmup_fraction == 0.1
    # A copy re-resolves defaults that depend on another option...
    assert TrainConfig(schedule="onecycle").replace(schedule="cosine").warmup_fraction == 0.0
    # ...but keeps what was set explicitly.
    assert TrainConfig(warmup_fraction=0.2).replace(schedule="cosine").warmup_fraction == 0.2


def test_yaml_dict_names_callables_and_paths(tmp_path):
    import torch

    plain = TrainConfig(loss_fn=torch.nn.MSELoss(), run_dir=tmp_path).to_yaml_dict()
    assert plain["loss_fn"] == "<torch.nn.modules.loss.MSELoss>"
    assert plain["run_dir"] == str(tmp_path)


def test_describe_allowed_covers_each_field():
    for name, info in TrainConfig.model_fields.items():
        assert describe_allowed(info.annotation, info.metadata), name


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (["acuracy"], "metrics=['acuracy']: 'acuracy' is not a known metric. Did you mean 'accuracy'?"),
        (["val_f1"], "metrics=['val_f1']: 'val_f1' is not a known metric. Did you mean 'f1'?"),
        (["accuracy", "RMSE"], "metrics=['accuracy', 'RMSE']: 'RMSE' is not a known metric. Did you mean 'rmse'?"),
        (["top1"], "'top1' is the share of labels that are the top prediction: write 'accuracy'."),
        (["loss"], "'loss' need not be asked for: val_loss is always computed."),
        (["kappa"], "'kappa' is not a known metric. Known metrics: accuracy, f1, precision, recall, confusion_matrix"),
        ("accuracy", "metrics='accuracy' has the wrong type: expected a list, each item a string or None."),
        # An item is shown as the item it is, not as if it were the option.
        ([1], "metrics[0]=1 has the wrong type: expected a list, each item a string or None."),
        (["accuracy", 2], "metrics[1]=2 has the wrong type: expected a list, each item a string or None."),
    ],
)
def test_metric_names_are_checked_with_the_fix(metrics, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(metrics=metrics)
    assert message in str(caught.value)


def test_chosen_metrics_keep_their_order_without_duplicates():
    assert TrainConfig().metrics is None  # the task's default set
    assert TrainConfig(metrics=["top10", "f1", "top10", "perplexity"]).metrics == ["top10", "f1", "perplexity"]
    assert TrainConfig(metrics=[]).metrics == []
    assert TrainConfig(metrics=("mae", "r2")).to_yaml_dict()["metrics"] == ["mae", "r2"]


FLOAT_OPTIONS = [name for name, info in TrainConfig.model_fields.items() if "float" in str(info.annotation)]


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", [True, "0.01"], ids=["bool", "text"])
def test_float_options_take_numbers_only(name, value):
    """lr=True trained at lr 1.0, and lr="0.01" was accepted, while epochs=True was refused: every float option is strict."""
    with pytest.raises(ConfigError, match=rf"^{name}={value!r} has the wrong type: expected .*a number"):
        TrainConfig(**{name: value})


def test_float_options_still_take_integers():
    assert TrainConfig(lr=1, weight_decay=0).lr == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"accumulate_grad_batches": 0},
            "accumulate_grad_batches=0 is out of range: expected an integer from 1 to 100000",
        ),
        ({"accumulate_grad_batches": 2.0}, "accumulate_grad_batches=2.0 has the wrong type"),
        ({"max_steps": True}, "max_steps=True has the wrong type: expected an integer ≥ 1 or None"),
        ({"val_every_steps": 0}, "val_every_steps=0 is out of range"),
        (
            {"limit_train_batches": 0},
            "limit_train_batches=0 is out of range: expected an integer ≥ 1 or a number > 0 and ≤ 1 or None",
        ),
        ({"limit_val_batches": 1.5}, "limit_val_batches=1.5 is out of range"),
        ({"limit_val_batches": "10"}, "limit_val_batches='10' has the wrong type"),
        ({"limit_train_batches": False}, "limit_train_batches=False has the wrong type"),
        ({"fast_dev_run": 1}, "fast_dev_run=1 has the wrong type: expected true or false"),
        ({"overfit_batches": 0.5}, "overfit_batches=0.5 has the wrong type"),
        (
            {"monitor": "val loss"},
            "monitor='val loss' is not a valid choice: expected a metric name such as 'val_loss' or None",
        ),
        (
            {"mode": "maxi"},
            "mode='maxi' is not a valid choice: expected one of 'auto', 'min', 'max'. Did you mean 'max'?",
        ),
        ({"schedule_interval": "batch"}, "schedule_interval='batch' is not a valid choice"),
    ],
)
def test_the_options_with_lightnings_names_are_checked(options, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**options)
    assert str(caught.value) == message or str(caught.value).startswith(message)


def test_max_steps_without_epochs_lets_max_steps_decide():
    assert TrainConfig(max_steps=100).epochs == 1000 and TrainConfig(max_steps=100, epochs=3).epochs == 3
    assert TrainConfig().epochs == 10 and TrainConfig(max_steps=100).replace(max_steps=None).epochs == 10
    assert TrainConfig(max_steps=100).to_yaml_dict()["epochs"] == 1000  # config.yaml re-runs the same run


def test_a_schedule_factory_is_a_valid_schedule():
    factory = lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 2)  # noqa: E731
    config = TrainConfig(schedule=factory)
    assert config.schedule is factory and config.warmup_fraction == 0.0
    assert config.to_yaml_dict()["schedule"].startswith("<tests.test_config.")
