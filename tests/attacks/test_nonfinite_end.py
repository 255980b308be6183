"""fit() must never return normally with a broken model: non-finite weights, or one that no step changed."""

import pytest
import torch
from torch import nn

import trainwell
from trainwell import DivergenceError
from trainwell.data import TensorLoader

QUIET = {"progress": False}


def _data(samples=64):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(samples, 8, generator=generator), torch.randint(0, 3, (samples,), generator=generator)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_weights_that_went_non_finite_on_a_finite_loss_end_with_divergence_error_naming_them():
    """weight_decay=1e308: one step with a finite loss leaves inf weights, and no run of bad steps follows."""
    inputs, targets = _data()
    model = _model()
    with pytest.raises(DivergenceError) as caught:
        trainwell.fit(
            model, TensorLoader(inputs, targets, batch_size=32, seed=0), epochs=1, weight_decay=1e308, **QUIET
        )
    message = str(caught.value)
    assert message.startswith("Training ended with a broken model: non-finite values in 0.weight (128 of 128 values)")
    assert "after 2 steps" in message and "lr, weight_decay or momentum too high" in message


def test_a_run_whose_every_step_was_skipped_ends_with_divergence_error():
    """All-inf inputs in fewer steps than max_nonfinite_steps: every update skipped, the model never trained."""
    inputs, targets = _data()
    with pytest.raises(DivergenceError, match="all 4 steps had a non-finite loss or gradient and were skipped"):
        trainwell.fit(
            _model(),
            TensorLoader(torch.full_like(inputs, float("inf")), targets, batch_size=16, seed=0),
            epochs=1,
            **QUIET,
        )


def test_the_advice_quotes_the_lr_after_the_rollbacks_cut_it():
    inputs, targets = _data()
    bad = TensorLoader(torch.full_like(inputs, float("inf")), targets, batch_size=4, seed=0)
    with pytest.raises(DivergenceError) as caught:
        trainwell.fit(_model(), bad, epochs=3, lr=1e-3, **QUIET)
    # Three rollbacks halved the peak lr three times: 0.001 -> 0.000125, which is what the advice must start from.
    assert "peak lr 0.001 -> 0.000125" in str(caught.value)
    assert "Lower lr (now 0.000125; try 1.25e-05)" in str(caught.value)
