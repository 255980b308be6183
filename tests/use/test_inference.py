import pytest
import torch
from torch import nn

import trainwell
from trainwell import CheckpointError, CheckpointMismatchError, ConfigError
from trainwell.files.checkpoint import write_checkpoint
from trainwell.use.inference import find_checkpoint


def test_load_model_gives_the_weights_the_run_ended_with(trained_run):
    result = trained_run("digits", data="digits", epochs=2)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    assert loaded.checkpoint == result.best_checkpoint
    assert not loaded.model.training and loaded.info.class_names == [str(digit) for digit in range(10)]
    assert loaded.config.model == "mlp" and loaded.config.model_args["hidden"] == [256, 128]
    for (name, saved), trained in zip(loaded.model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(saved, trained.cpu()), name
    inputs = torch.randn(5, 64)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.predict(inputs).outputs, result.model(inputs))


def test_best_is_the_lowest_val_loss_and_last_the_highest_step(tmp_path):
    model = nn.Linear(2, 2)
    directory = tmp_path / "run" / "checkpoints"
    for step, val_loss in ((10, 0.5), (20, 0.3), (30, 0.4)):
        write_checkpoint(
            directory / f"epoch-{step // 10:04d}-step-{step:09d}.pt",
            {"model_state_dict": model.state_dict()},
            step=step,
            epoch=step // 10,
            val_loss=val_loss,
            kind="epoch",
        )
    assert find_checkpoint(tmp_path / "run", "best").name == "epoch-0002-step-000000020.pt"
    assert find_checkpoint(tmp_path / "run", "last").name == "epoch-0003-step-000000030.pt"
    assert find_checkpoint(tmp_path / "run", directory / "epoch-0001-step-000000010.pt").name.startswith("epoch-0001")
    with pytest.raises(CheckpointError, match="holds no committed checkpoint"):
        find_checkpoint(tmp_path, "best")
    with pytest.raises(CheckpointError, match="'nope.pt' does not exist: give 'best', 'last' or the path"):
        find_checkpoint(tmp_path / "run", "nope.pt")


def test_best_of_a_run_without_validation_is_the_lowest_train_loss_its_monitor_kept(tmp_path):
    """Without validation a run monitors train_loss (recorded in each manifest); "best" is chosen again by it when
    best.pt is missing, not by a val_loss the run never had."""
    model = nn.Linear(2, 2)
    directory = tmp_path / "run" / "checkpoints"
    for step, train_loss in ((10, 0.5), (20, 0.3), (30, 0.4)):
        write_checkpoint(
            directory / f"epoch-{step // 10:04d}-step-{step:09d}.pt",
            {"model_state_dict": model.state_dict()},
            step=step,
            epoch=step // 10,
            kind="epoch",
            monitor="train_loss",
            monitored=train_loss,
        )
    (tmp_path / "run" / "config.yaml").write_text("epochs: 3\n")
    assert find_checkpoint(tmp_path / "run", "best").name == "epoch-0002-step-000000020.pt"


def test_a_run_of_your_own_model_loads_into_the_model_you_pass(tmp_path, blob_loaders, classifier):
    trainwell.fit(classifier, *blob_loaders, epochs=2, run_dir=tmp_path / "own", progress=False)
    with pytest.raises(ConfigError, match=r"names no model to rebuild .* load_model\(run_dir, model=MyModel\(\)\)"):
        trainwell.load_model(tmp_path / "own")
    fresh = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    loaded = trainwell.load_model(tmp_path / "own", model=fresh, device="cpu")
    assert loaded.info is None and loaded.model is fresh
    assert torch.equal(fresh[0].weight, classifier[0].weight.cpu())
    inputs = torch.randn(4, 2)
    assert torch.equal(loaded.predict(inputs).outputs, classifier(inputs).detach())
    with pytest.raises(CheckpointMismatchError, match="different shape"):
        trainwell.load_model(tmp_path / "own", model=nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 4)))


def test_not_a_run_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist: give a directory written by trainwell train"):
        trainwell.load_model(tmp_path / "missing")
    with pytest.raises(ConfigError, match="has no config.yaml"):
        trainwell.load_model(tmp_path)


def test_load_model_evaluate_needs_labels(trained_run, tmp_path):
    result = trained_run("digits", data="digits", epochs=2)
    loaded = trainwell.load_model(result.run_dir, device="cpu")
    unlabelled = tmp_path / "rows.csv"
    from trainwell.use.tables import feature_names

    unlabelled.write_text(",".join(feature_names("digits")) + "\n" + ",".join(["0"] * 64) + "\n")
    with pytest.raises(
        trainwell.DataError, match="holds no labels to evaluate against: the table needs a 'target' column"
    ):
        loaded.evaluate(unlabelled)
