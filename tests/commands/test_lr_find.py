import pytest
import yaml
from PIL import Image

from trainwell.cli import main
from trainwell.recipes import RunConfig, find_recipe_lr


def test_lr_find_prints_a_suggestion_and_plots(tmp_path, capsys):
    assert main(["lr-find", "--data", "wine", "--out", str(tmp_path / "lr.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Suggested lr: ") and "trainwell train --lr " in out
    assert Image.open(tmp_path / "lr.png").format == "PNG"


def test_lr_find_flags_are_validated(capsys):
    assert main(["lr-find", "--steps", "3", "--data", "iris"]) == 2
    assert "num_steps=3 is out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_train_with_lr_auto_uses_the_finders_suggestion(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                "wine",
                "--epochs",
                "2",
                "--lr",
                "auto",
                "--batch-size",
                "32",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 0
    )
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    expected = find_recipe_lr(RunConfig(data="wine", batch_size=32, progress=False)).suggested_lr
    assert resolved["lr"] == pytest.approx(expected) and resolved["lr"] != 1e-2
    # The lr was found for this batch size, so it is not rescaled again.
    assert resolved["reference_batch_size"] == 32


def test_lr_find_merges_model_args_flags_into_the_config_files_as_train_does(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    import trainwell.recipes

    config = tmp_path / "run.yaml"
    config.write_text("data: iris\nmodel_args: {hidden: [16], dropout: 0.1}\n")
    searched = []

    def find(run_config, **options):
        searched.append(run_config)
        return SimpleNamespace(plot=lambda path: path, suggested_lr=0.01, min_loss_lr=0.005)

    monkeypatch.setattr(trainwell.recipes, "find_recipe_lr", find)
    assert main(["lr-find", "--config", str(config), "--model-arg", "dropout=0.4", "--out", str(tmp_path / "lr.png")]) == 0
    (run_config,) = searched
    assert (run_config.model_args["hidden"], run_config.model_args["dropout"]) == ([16], 0.4)
    assert capsys.readouterr().out.startswith("Suggested lr: 0.01")
    # The model train would build from the same file and flags.
    assert main(["train", "--config", str(config), "--model-arg", "dropout=0.4", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["model_args"] == run_config.model_args
