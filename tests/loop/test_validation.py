import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from trainwell.loop.tasks import infer_task
from trainwell.loop.validation import evaluation_pass


def _step(model, task):
    def step(batch):
        inputs, targets = batch
        outputs = model(inputs)
        return {"loss": task.loss(outputs, targets), "outputs": outputs, "targets": targets}

    return step


def test_the_pass_weights_losses_by_batch_size_and_restores_the_model_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    inputs, targets = torch.randn(10, 2), torch.randint(0, 3, (10,))
    task = infer_task("auto", None, model(inputs), targets)
    batches = [(inputs[:7], targets[:7]), (inputs[7:], targets[7:])]
    result = evaluation_pass(
        model, batches, _step(model, task), task=lambda: task, device=torch.device("cpu"), source="val_loader"
    )
    model.eval()
    whole = nn.functional.cross_entropy(model(inputs), targets).item()
    accuracy = (model(inputs).argmax(1) == targets).float().mean().item()
    # Evaluated without dropout (eval mode), batch by batch: the loss of the whole set at once.
    assert result.metrics["val_loss"] == pytest.approx(whole, rel=1e-6)
    assert result.metrics["val_accuracy"] == pytest.approx(accuracy) and result.samples == 10
    assert len(result.details.confusion_matrix) == 3


def test_the_model_goes_back_to_training_mode_after_the_pass():
    model = nn.Linear(2, 1)
    model.train()
    evaluation_pass(
        model,
        [(torch.zeros(2, 2), torch.zeros(2))],
        lambda b: model(b[0]).sum(),
        task=lambda: None,
        device=torch.device("cpu"),
        source="val_loader",
    )
    assert model.training


def test_a_step_returning_only_its_loss_gives_the_loss_alone():
    model = nn.Linear(2, 1)
    result = evaluation_pass(
        model,
        [(torch.ones(4, 2), torch.zeros(4))],
        lambda b: model(b[0]).pow(2).mean(),
        task=lambda: None,
        device=torch.device("cpu"),
        source="val_loader",
    )
    assert list(result.metrics) == ["val_loss"] and result.details is None


_MEMORY_CHILD = """
import json, re, sys
from pathlib import Path
import torch
from trainwell.loop.tasks import infer_task
from trainwell.loop.validation import evaluation_pass

def kilobytes(field):
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

torch.set_num_threads(1)
classes, generator = 20_000, torch.Generator().manual_seed(0)
model = torch.nn.Linear(32, classes)
inputs, targets = torch.randn(4096, 32, generator=generator), torch.randint(0, classes, (4096,), generator=generator)
batches = [(inputs[i : i + 256], targets[i : i + 256]) for i in range(0, 4096, 256)]
task = infer_task("auto", None, model(inputs[:2]).detach(), targets[:2])
names = sys.argv[1:]

def step(batch):
    outputs = model(batch[0])
    return {"loss": task.loss(outputs, batch[1]), "outputs": outputs, "targets": batch[1]}

cpu = torch.device("cpu")
evaluation_pass(model, batches[:1], step, task=lambda: task, device=cpu, source="val", metrics=names)  # one-time costs
Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from here
before = kilobytes("VmRSS")
result = evaluation_pass(model, batches, step, task=lambda: task, device=cpu, source="val", metrics=names)
print(json.dumps({"extra_mb": (kilobytes("VmHWM") - before) / 1024, "metrics": sorted(result.metrics)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_a_pass_over_20000_classes_stays_under_200_mb_of_extra_memory():
    """The peak resident memory of the pass, over its start, in a fresh process (memory freed by earlier
    tests could hide an allocation): every class metric chosen, counted in memory linear in the classes."""
    chosen = ["accuracy", "f1", "precision", "recall", "top5", "perplexity"]
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, *chosen], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["metrics"] == sorted(["val_loss", *(f"val_{name}" for name in chosen)])
    # The logits of a batch alone are 20 MB (256 x 20,000 floats); a classes² confusion count would be 3.2 GB.
    assert measured["extra_mb"] < 200, measured
