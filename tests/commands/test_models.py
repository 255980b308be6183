import subprocess
import sys

import pytest

from trainwell.cli import main
from trainwell.models.registry import MODELS


def test_lists_every_model_and_its_arguments(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, spec in MODELS.items():
        assert f"{name}: {spec.summary}" in out
        for argument in spec.arguments:
            assert f"  {argument.name} " in out
    assert "in_channels      image channels; from the data" in out


def test_one_model(capsys):
    assert main(["models", "gru"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gru: GRU encoder") and "cnn:" not in out


def test_unknown_model_is_one_line_and_exit_2(capsys):
    assert main(["models", "gruu"]) == 2
    assert capsys.readouterr().err.strip() == (
        "trainwell models: error: model='gruu' is not a known model: expected one of 'mlp', 'cnn', 'lstm', "
        "'gru', 'rnn', 'transformer'. Did you mean 'gru'?"
    )


def test_listing_does_not_load_torch():
    code = "import sys; from trainwell.cli import main; main(['models']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().endswith("False"), done.stderr


def test_train_help_names_the_registered_models(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    # The flag's choices come from the registry (the field's type), so a new model is listed by itself.
    assert f"--model {{{','.join(MODELS)}}}" in out
