import math

import pytest
import torch
from sklearn import metrics as sk

from trainwell.loop.metrics import ValidationMetrics
from trainwell.loop.tasks import IGNORE_INDEX, infer_task


def _collect(outputs, targets, batch=7):
    task = infer_task("auto", None, outputs[:batch], targets[:batch])
    collected = ValidationMetrics(task)
    for start in range(0, len(outputs), batch):
        collected.update(outputs[start : start + batch], targets[start : start + batch])
    return collected, collected.compute()


def test_multiclass_metrics_match_scikit_learn_across_batches():
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(50, 4, generator=generator)
    targets = torch.randint(0, 4, (50,), generator=generator)
    collected, values = _collect(outputs, targets)
    predicted = outputs.argmax(1).numpy()
    assert values["val_f1"] == pytest.approx(sk.f1_score(targets, predicted, average="macro"), abs=1e-6)
    assert values["val_precision"] == pytest.approx(sk.precision_score(targets, predicted, average="macro"), abs=1e-6)
    assert values["val_recall"] == pytest.approx(sk.recall_score(targets, predicted, average="macro"), abs=1e-6)
    assert collected.confusion_matrix == sk.confusion_matrix(targets, predicted, labels=range(4)).tolist()


def test_ignored_labels_do_not_count():
    outputs = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    targets = torch.tensor([0, 1, IGNORE_INDEX])
    collected, values = _collect(outputs, targets)
    assert values["val_f1"] == pytest.approx(1.0)
    assert collected.confusion_matrix == [[1, 0], [0, 1]]


def test_binary_metrics_treat_positive_logits_as_class_1():
    outputs = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    targets = torch.tensor([1, 0, 0, 1, 1])
    collected, values = _collect(outputs, targets)
    predicted = [1, 0, 1, 0, 1]
    assert values["val_f1"] == pytest.approx(sk.f1_score(targets, predicted))
    assert values["val_precision"] == pytest.approx(sk.precision_score(targets, predicted))
    assert collected.confusion_matrix == sk.confusion_matrix(targets, predicted).tolist()


def test_regression_rmse_and_r2_match_scikit_learn():
    generator = torch.Generator().manual_seed(1)
    targets = torch.randn(40, 1, generator=generator)
    outputs = targets + 0.3 * torch.randn(40, 1, generator=generator)
    collected, values = _collect(outputs, targets)
    assert values["val_rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(targets, outputs)), rel=1e-5)
    assert values["val_r2"] == pytest.approx(sk.r2_score(targets, outputs), rel=1e-5)
    assert collected.confusion_matrix is None


def test_nothing_seen_computes_nothing():
    task = infer_task("auto", None, torch.randn(2, 3), torch.tensor([0, 1]))
    assert ValidationMetrics(task).compute() == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layout", ["class-first", "class-last", "binary", "regression"])
def test_counting_a_batch_never_waits_for_the_gpu(layout):
    cuda = torch.device("cuda")
    if layout == "regression":
        outputs, targets, names = (
            torch.randn(64, 3, device=cuda),
            torch.randn(64, 3, device=cuda),
            ["mae", "mse", "rmse", "r2"],
        )
    elif layout == "binary":
        outputs, targets, names = torch.randn(64, 1, device=cuda), torch.randint(0, 2, (64,), device=cuda), None
    else:
        outputs, targets = torch.randn(64, 10, 7, device=cuda), torch.randint(0, 10, (64, 7), device=cuda)
        targets[:, -1] = IGNORE_INDEX
        outputs = outputs.transpose(1, 2) if layout == "class-last" else outputs
        names = ["accuracy", "f1", "precision", "recall", "top5", "perplexity", "confusion_matrix"]
    collected = ValidationMetrics(infer_task("auto", None, outputs, targets), names, cuda)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            collected.update(outputs, targets)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    values = collected.compute()
    assert values and all(math.isfinite(value) for value in values.values())


def _classification_case(seed, classes=6, samples=200):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(samples, classes, generator=generator)
    # A class that is neither a label nor a prediction must not count in the macro averages.
    outputs[:, -1] -= 100
    targets = torch.randint(0, classes - 1, (samples,), generator=generator)
    return outputs, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_scores_and_per_class_counts_equal_torchmetrics(seed):
    from torchmetrics.functional import classification as tm

    outputs, targets = _classification_case(seed)
    targets[::9] = IGNORE_INDEX
    collected, values = _collect(outputs, targets, batch=32)
    common = {"num_classes": 6, "ignore_index": IGNORE_INDEX}
    assert values["val_f1"] == pytest.approx(tm.multiclass_f1_score(outputs, targets, **common).item(), abs=1e-6)
    assert values["val_precision"] == pytest.approx(
        tm.multiclass_precision(outputs, targets, **common).item(), abs=1e-6
    )
    assert values["val_recall"] == pytest.approx(tm.multiclass_recall(outputs, targets, **common).item(), abs=1e-6)
    per_class = collected.per_class()
    expected = tm.multiclass_f1_score(outputs, targets, average="none", **common)
    assert per_class["f1"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert per_class["support"] == torch.bincount(targets[targets != IGNORE_INDEX], minlength=6).tolist()
    assert collected.confusion_matrix == tm.multiclass_confusion_matrix(outputs, targets, **common).tolist()


def test_top_k_and_perplexity():
    from sklearn.metrics import top_k_accuracy_score

    outputs, targets = _classification_case(0, classes=8)
    collected, values = _collect_chosen(outputs, targets, ["top3", "perplexity", "accuracy"])
    assert list(values) == ["val_top3", "val_perplexity", "val_accuracy"]  # the order asked for
    assert values["val_top3"] == pytest.approx(top_k_accuracy_score(targets, outputs, k=3, labels=range(8)))
    expected = math.exp(torch.nn.functional.cross_entropy(outputs, targets).item())
    assert values["val_perplexity"] == pytest.approx(expected, rel=1e-6)
    assert collected.confusion_matrix is None and collected.per_class() is None


def _collect_chosen(outputs, targets, names, batch=7):
    task = infer_task("auto", None, outputs[:batch], targets[:batch])
    collected = ValidationMetrics(task, names)
    for start in range(0, len(outputs), batch):
        collected.update(outputs[start : start + batch], targets[start : start + batch])
    return collected, collected.compute()


def test_class_last_logits_give_the_metrics_of_the_permuted_layout():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 9, 7, generator=generator)  # (N, T, C): 9 positions, 7 classes
    targets = torch.randint(0, 7, (12, 9), generator=generator)
    targets[:, 7:] = IGNORE_INDEX  # padding
    names = ["accuracy", "f1", "precision", "recall", "top2", "perplexity", "confusion_matrix"]
    last, from_last = _collect_chosen(logits, targets, names, batch=5)
    first, from_first = _collect_chosen(logits.transpose(1, 2).contiguous(), targets, names, batch=5)
    assert (last.task.class_dim, first.task.class_dim) == (-1, 1)
    assert from_last == pytest.approx(from_first, rel=1e-6)
    assert last.confusion_matrix == first.confusion_matrix and last.per_class() == first.per_class()
    flat = logits.reshape(-1, 7)[targets.reshape(-1) != IGNORE_INDEX]
    labels = targets[targets != IGNORE_INDEX]
    assert from_last["val_accuracy"] == pytest.approx((flat.argmax(1) == labels).float().mean().item())


def test_regression_mse_and_multi_output_scores_match_scikit_learn():
    generator = torch.Generator().manual_seed(2)
    targets = torch.randn(60, 3, generator=generator) * torch.tensor([1.0, 10.0, 0.1]) + 1000.0
    outputs = targets + 0.2 * torch.randn(60, 3, generator=generator)
    _, values = _collect_chosen(outputs, targets, ["mae", "mse", "rmse", "r2"])
    assert values["val_mae"] == pytest.approx(sk.mean_absolute_error(targets, outputs), rel=1e-5)
    assert values["val_mse"] == pytest.approx(sk.mean_squared_error(targets, outputs), rel=1e-5)
    root = sk.root_mean_squared_error(targets, outputs, multioutput="raw_values").mean()
    assert values["val_rmse"] == pytest.approx(root, rel=1e-5)
    # Targets around 1000 with a spread of 0.1: float32 sums of squares would lose R² entirely.
    assert values["val_r2"] == pytest.approx(sk.r2_score(targets, outputs), rel=1e-4)


def test_r2_of_constant_targets_follows_torchmetrics():
    from torchmetrics.functional import r2_score

    targets = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    for outputs in (targets.clone(), targets + torch.tensor([0.5, 0.0]), targets + 0.5):
        _, values = _collect_chosen(outputs, targets, ["r2"], batch=2)
        assert values["val_r2"] == pytest.approx(r2_score(outputs, targets).item(), abs=1e-6)


def test_counts_of_several_processes_add_up_to_the_whole_set():
    """Under torchrun every process's counters are summed before the metrics are computed."""
    outputs, targets = _classification_case(4)
    task = infer_task("auto", None, outputs, targets)
    parts = [ValidationMetrics(task) for _ in range(3)]
    for index, part in enumerate(parts):
        part.update(outputs[index::3], targets[index::3])
    whole, values = _collect(outputs, targets)
    combined = ValidationMetrics(task)
    assert combined.compute(sum(part.sums() for part in parts)) == pytest.approx(values)
    assert combined.confusion_matrix == whole.confusion_matrix and combined.per_class() == whole.per_class()


def test_the_default_set_depends_on_the_task_and_the_class_count():
    many = infer_task("auto", None, torch.randn(4, 101), torch.tensor([0, 1, 2, 3]))
    few = infer_task("auto", None, torch.randn(4, 100), torch.tensor([0, 1, 2, 3]))
    assert ValidationMetrics(many).names == ["accuracy"]
    assert ValidationMetrics(few).names == ["accuracy", "f1", "precision", "recall", "confusion_matrix"]
    collected = ValidationMetrics(many)
    collected.update(torch.randn(4, 101), torch.tensor([0, 1, 2, 3]))
    assert list(collected.compute()) == ["val_accuracy"]
    assert collected.confusion_matrix is None and collected.per_class() is None
    assert ValidationMetrics(many, []).names == []


def test_metrics_that_do_not_fit_the_model_are_refused_with_the_fix():
    from trainwell import ConfigError

    multiclass = infer_task("auto", None, torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
    binary = infer_task("auto", None, torch.randn(4, 1), torch.tensor([0, 1, 1, 0]))
    regression = infer_task("auto", None, torch.randn(4, 1), torch.randn(4))
    wide = infer_task("auto", None, torch.randn(4, 150), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(
        ConfigError, match=r"'rmse' is a regression metric, but the task is classification: choose from"
    ):
        ValidationMetrics(multiclass, ["accuracy", "rmse"])
    with pytest.raises(ConfigError, match=r"'top5' looks among the top 5 of 5 classes.*choose K below 5"):
        ValidationMetrics(multiclass, ["top5"])
    with pytest.raises(ConfigError, match=r"'perplexity' needs one logit per class"):
        ValidationMetrics(binary, ["perplexity"])
    with pytest.raises(ConfigError, match=r"'f1' is a classification metric, but the task is regression"):
        ValidationMetrics(regression, ["f1"])
    with pytest.raises(ConfigError, match=r"'confusion_matrix' of 150 classes would hold 22,500 counts"):
        ValidationMetrics(wide, ["confusion_matrix"])
    assert ValidationMetrics(wide, ["f1", "top5"]).names == ["f1", "top5"]  # per-class counts: linear in the classes


def test_fit_reports_the_chosen_metrics_under_stable_names(classifier, blob_loaders, tmp_path):
    import json

    from trainwell import fit

    result = fit(
        classifier, *blob_loaders, epochs=2, progress=False, metrics=["accuracy", "top2"], run_dir=tmp_path / "run"
    )
    row = result.history[-1]
    assert [name for name in row if name.startswith("val_")] == ["val_loss", "val_accuracy", "val_top2"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["val_top2"] for record in records if record["event"] == "epoch"] == [
        r["val_top2"] for r in result.history
    ]
    assert not (tmp_path / "run" / "confusion.json").exists()  # not chosen, not kept


def test_fit_refuses_metrics_that_do_not_fit_before_any_step(classifier, blob_loaders):
    from trainwell import ConfigError, fit

    before = [parameter.detach().clone() for parameter in classifier.parameters()]
    with pytest.raises(ConfigError, match="'r2' is a regression metric, but the task is classification"):
        fit(classifier, *blob_loaders, epochs=1, progress=False, metrics=["accuracy", "r2"])
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.parameters()))
