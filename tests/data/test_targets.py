import pytest
import torch

from trainwell import DataError
from trainwell.data.targets import TargetScaling, looks_like_labels, scale_targets


def test_scaling_round_trips_per_column_and_on_any_dtype():
    targets = torch.stack([torch.linspace(0, 10, 20), torch.linspace(-500, 900, 20)], dim=1)
    (train, other), scaling = scale_targets(targets[:15], targets[15:])
    assert train.mean(dim=0).abs().max() < 1e-5 and torch.allclose(train.std(dim=0), torch.ones(2))
    assert torch.allclose(scaling.unscale(torch.cat([train, other])), targets, atol=1e-3)
    assert TargetScaling.from_dict(scaling.to_dict()) == scaling and TargetScaling.from_dict(None) is None
    assert scaling.unscale(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_a_constant_column_is_refused_naming_it():
    with pytest.raises(DataError, match=r"the regression targets \(column 1\): a single value \(3\)"):
        TargetScaling.fit(torch.tensor([[1.0, 3.0], [2.0, 3.0]]))


@pytest.mark.parametrize(
    ("values", "classes", "expected"),
    [([0.0, 1.0, 2.0], None, True), ([0.0, 1.5], None, False), ([-1.0, 1.0], None, False), ([0.0, 4.0], 4, False),
     ([0.0, 3.0], 4, True), ([float("nan"), 1.0], None, False), (list(range(30)), None, False)],
)
def test_what_looks_like_class_labels(values, classes, expected):
    assert looks_like_labels(torch.tensor(values, dtype=torch.float32), classes) is expected
