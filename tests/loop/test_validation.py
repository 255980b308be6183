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
