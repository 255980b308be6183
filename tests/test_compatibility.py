"""Checkpoints written by earlier versions of trainwell still resume, exactly."""

import importlib.util
import shutil
from pathlib import Path

import torch

import trainwell

FIXTURE = Path(__file__).parent / "fixtures" / "format1"


def _recipe():
    """The fixture's own make.py: its model, loaders and options."""
    spec = importlib.util.spec_from_file_location("format1_recipe", FIXTURE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_format_1_checkpoint_resumes_to_the_weights_of_the_uninterrupted_run(tmp_path, one_thread):
    make = _recipe()
    model, train_loader, val_loader = make.build()
    checkpoints = tmp_path / "old" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in (make.STEP_FILE, make.STEP_FILE.replace(".pt", ".manifest.json")):
        shutil.copy(FIXTURE / name, checkpoints / name)
    trainwell.fit(
        model,
        train_loader,
        val_loader,
        run_dir=tmp_path / "new",
        resume=checkpoints / make.STEP_FILE,
        **make.OPTIONS,
    )
    expected = torch.load(FIXTURE / "final-weights.pt", weights_only=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
