import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell import ModelError
from trainwell.loop.prediction import concatenated


def test_predict_returns_the_trained_models_outputs_for_every_batch(classifier, blob_loaders, blobs):
    trainer = trainwell.Trainer(epochs=2, progress=False)
    trainer.fit(classifier, *blob_loaders)
    inputs, _ = blobs
    classifier.train()  # predict runs in eval mode and puts the mode back
    outputs = trainer.predict(DataLoader(TensorDataset(inputs), batch_size=64))  # inputs alone: 1-tuples
    assert classifier.training and outputs.shape == (300, 3) and outputs.device.type == "cpu"
    classifier.eval()
    with torch.no_grad():
        assert torch.allclose(outputs, classifier(inputs), atol=1e-6)
    # (inputs, targets) batches (the targets unused), and dicts; other batch sizes round differently.
    assert torch.allclose(trainer.predict(blob_loaders[1]), outputs[240:], atol=1e-6)
    assert torch.allclose(trainer.predict([{"inputs": inputs[:5]}]), outputs[:5], atol=1e-6)


def test_predict_with_a_model_of_its_own_and_outputs_that_do_not_concatenate():
    class TwoHeads(nn.Module):
        def forward(self, x):
            return x.sum(1), {"first": x[:, 0]}

    trainer = trainwell.Trainer(device="cpu")
    with pytest.raises(ModelError, match="Trainer.predict has no model: call fit"):
        trainer.predict([torch.ones(2, 3)])
    joined = trainer.predict([torch.ones(2, 3), torch.zeros(1, 3)], model=TwoHeads())
    assert isinstance(joined, list) and len(joined) == 2  # a tuple holding a dict: kept per batch
    assert concatenated([(torch.ones(2), torch.zeros(2, 1)), (torch.ones(1), torch.zeros(1, 1))])[1].shape == (3, 1)
    parts = [torch.zeros(2, 3), torch.zeros(2, 4)]
    unjoined = concatenated(parts)  # shapes differ beyond the batch: the list itself, its tensors untouched
    assert unjoined is parts and len(parts) == 2 and parts[0].shape == (2, 3) and parts[1].shape == (2, 4)
