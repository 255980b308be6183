"""The run_start record: the plan in optimizer steps, and a regression run's first-batch target statistics."""

import pytest
import torch
from torch import nn

import trainwell
from trainwell.data import TensorLoader


def test_run_info_counts_optimizer_steps_and_records_the_first_batch_targets():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 3, generator=generator)
    targets = 5.0 + 2.0 * torch.randn(64, 1, generator=generator)
    loader = TensorLoader(inputs, targets, batch_size=16, shuffle=False)
    trainer = trainwell.Trainer(epochs=1, accumulate_grad_batches=2, progress=False)
    trainer.fit(nn.Linear(3, 1), loader)
    # The progress bar counts batches; the record and the schedules count optimizer steps.
    assert trainer.steps_per_epoch == 4 and trainer.run_info["steps_per_epoch"] == 2
    first = targets[:16]
    recorded = trainer.run_info["targets"]
    assert recorded == pytest.approx({"mean": float(first.mean()), "std": float(first.std())})
