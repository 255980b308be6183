import pytest
import torch

from trainwell import ConfigError
from trainwell.bench import PrecisionResult, compare_precisions, format_precision_table, workload, workloads


def test_every_workload_builds_and_runs_on_its_data():
    for work in workloads(scale=0.05):
        model = work.build()
        outputs = model(work.inputs[:4])
        assert outputs.shape[0] == 4 and outputs.shape[1] == int(work.targets.max()) + 1


def test_workload_labels_are_learnable_not_random():
    work = workload("mlp-tabular", scale=0.1)
    counts = torch.bincount(work.targets)
    assert len(counts) == 2 and counts.min() > 0.1 * len(work.targets)
    # A linear teacher made the labels: a linear classifier must fit them far above chance.
    solution = torch.linalg.lstsq(work.inputs, (work.targets.float() * 2 - 1).unsqueeze(1)).solution
    predicted = (work.inputs @ solution).squeeze(1) > 0
    assert (predicted == work.targets.bool()).float().mean() > 0.9


def test_unknown_workload_is_refused():
    with pytest.raises(ConfigError, match="model='resnet' is not a benchmark workload"):
        workload("resnet")


def test_compare_precisions_reports_each_precision_relative_to_fp32():
    results = compare_precisions("mlp-tabular", batch_size=32, steps=3, device="cpu", rounds=1)
    assert [r.precision for r in results] == ["fp32", "bf16"]
    assert results[0].speedup == 1.0 and results[1].samples_per_s > 0
    assert all(r.final_loss > 0 for r in results)


def test_precision_table():
    table = format_precision_table([PrecisionResult("fp32", 1000.0, 0.5), PrecisionResult("bf16", 1500.0, 0.51, 1.5)])
    assert "| bf16 | 1,500 | 1.50x | 0.5100 | +2.0% |" in table
