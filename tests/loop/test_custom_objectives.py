"""A custom objective owns the step: a word-level language model with ``forward(x, hidden)``, BPTT batches and
a hidden state carried by the trainer, trained, validated and used for prediction with no wrapper."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import trainwell
from trainwell import DataError
from trainwell.callbacks import Callback

from ..conftest import torch_threads

VOCAB = 30


def _corpus(words=6000, seed=0):
    """Word ids from a Markov chain: each word is followed by one of two words, so context is learnable."""
    generator = torch.Generator().manual_seed(seed)
    following = torch.randint(0, VOCAB, (VOCAB, 2), generator=generator)
    choices = torch.randint(0, 2, (words,), generator=generator)
    ids = [0]
    for index in range(words - 1):
        ids.append(int(following[ids[-1], choices[index]]))
    return torch.tensor(ids)


def bptt_batches(tokens, batch_size, bptt):
    """As in PyTorch's word_language_model example: ``batch_size`` streams, cut into chunks of ``bptt`` steps."""
    length = (len(tokens) - 1) // batch_size
    data = tokens[: length * batch_size].view(batch_size, length).t()
    following = tokens[1 : length * batch_size + 1].view(batch_size, length).t()
    return [(data[i : i + bptt], following[i : i + bptt]) for i in range(0, length - bptt + 1, bptt)]


class WordLM(nn.Module):
    """Embedding, LSTM, decoder: outputs (seq, batch, vocab) and the new hidden state. No default for ``hidden``."""

    def __init__(self, embed=16, hidden=32):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, embed)
        self.lstm = nn.LSTM(embed, hidden)
        self.decoder = nn.Linear(hidden, VOCAB)

    def forward(self, x, hidden):
        output, hidden = self.lstm(self.embedding(x), hidden)
        return self.decoder(output), hidden

    def init_hidden(self, batch_size):
        zeros = torch.zeros(1, batch_size, self.lstm.hidden_size)
        return zeros, zeros.clone()


class LanguageModelTrainer(trainwell.Trainer):
    """Carries the hidden state from batch to batch (detached: truncated BPTT), reset every epoch."""

    hidden = None
    eval_hidden = None
    resets = 0

    def train_step(self, batch):
        inputs, targets = batch
        if self.batch_in_epoch == 0 or self.hidden is None:
            self.hidden = self.module.init_hidden(inputs.shape[1])
        output, self.hidden = self.model(inputs, tuple(h.detach() for h in self.hidden))
        return F.cross_entropy(output.reshape(-1, VOCAB), targets.reshape(-1))

    def eval_step(self, batch):
        inputs, targets = batch
        if self.eval_hidden is None:
            self.eval_hidden = self.module.init_hidden(inputs.shape[1])
            self.resets += 1
        output, self.eval_hidden = self.model(inputs, self.eval_hidden)
        outputs, targets = output.reshape(-1, VOCAB), targets.reshape(-1)
        return {"loss": F.cross_entropy(outputs, targets), "outputs": outputs, "targets": targets}

    def predict_step(self, inputs):
        output, _ = self.model(inputs, self.module.init_hidden(inputs.shape[1]))
        return output


class ResetEvalHidden(Callback):
    """Validation starts from a fresh hidden state, not the one training (or the last validation) left."""

    def __init__(self):
        self.calls = []

    def on_eval_begin(self, trainer, **kwargs):
        self.calls.append(trainer.global_step)
        trainer.eval_hidden = None


@pytest.fixture(scope="module")
def trained_language_model():
    with torch_threads(1):  # one_thread's block: a module-scoped fixture cannot ask for that fixture
        tokens = _corpus()
        train, val = bptt_batches(tokens[:5000], 8, 20), bptt_batches(tokens[5000:], 4, 20)
        torch.manual_seed(0)
        model = WordLM()
        reset = ResetEvalHidden()
        trainer = LanguageModelTrainer(epochs=4, lr=3e-3, callbacks=[reset], progress=False)
        result = trainer.fit(model, train, val)
    return trainer, result, reset, val


def test_a_language_model_with_forward_x_hidden_trains_with_no_wrapper(trained_language_model):
    trainer, result, reset, _ = trained_language_model
    losses = [row["val_loss"] for row in result.history]
    assert losses == sorted(losses, reverse=True)  # better every epoch
    # Uniform guessing is log(30) = 3.40; the chain's own uncertainty (two equally likely words) is log(2) = 0.69.
    assert losses[-1] < 0.35 * math.log(VOCAB) and math.exp(losses[-1]) < 3.0
    assert result.history[-1]["val_accuracy"] > 0.4  # metrics on the (N * T, C) outputs the step returned
    assert trainer.task.name == "classification"
    assert "WordLM: input (20, 8) -> output (20, 8, 30)" in trainer.model_summary  # shapes from the step's own call


def test_on_eval_begin_resets_the_state_training_carries(trained_language_model):
    trainer, _, reset, val = trained_language_model
    assert reset.calls == [31, 62, 93, 124]  # once before each validation
    assert trainer.resets == 4  # every validation started from a fresh hidden state
    assert trainer.hidden is not None  # training's own state was untouched by validation


def test_the_first_batch_check_runs_the_step_and_leaves_no_trace():
    tokens = _corpus(800)
    train = bptt_batches(tokens, 4, 10)
    ran = []  # outside the trainer: what the check puts back cannot erase it

    class Watching(LanguageModelTrainer):
        calls = 0

        def train_step(self, batch):
            ran.append((self.global_step, self.batch_in_epoch, torch.equal(batch[0], train[0][0])))
            self.calls += 1
            self.seen = getattr(self, "seen", []) + [self.global_step]
            return super().train_step(batch)

    torch.manual_seed(0)
    model = WordLM()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainer = Watching(epochs=1, progress=False)
    with pytest.raises(KeyboardInterrupt):

        class StopBeforeTraining(Callback):
            def on_train_begin(self, trainer, **kwargs):
                raise KeyboardInterrupt

        trainer.user_callbacks.append(StopBeforeTraining())
        trainer.fit(model, train)
    assert ran == [(0, None, True)]  # once, on the first batch, at step 0 before any epoch began
    assert trainer.hidden is None and trainer.calls == 0 and not hasattr(trainer, "seen")  # attributes put back
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_predict_runs_the_predict_step(trained_language_model):
    trainer, _, _, val = trained_language_model
    outputs = trainer.predict(val)  # batches as in training: the targets are not used
    assert outputs.shape == (len(val) * 20, 4, VOCAB) and outputs.device.type == "cpu"
    inputs = torch.cat([inputs for inputs, _ in val])
    assert torch.equal(outputs.argmax(-1)[:20], trainer.predict([inputs[:20]]).argmax(-1))


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            lambda loss: loss.detach(),
            r"train_step returned a loss that does not depend on the model's trainable parameters",
        ),
        (
            lambda loss: loss.reshape(1).repeat(3),
            r"train_step returned a tensor of shape \(3,\) as its loss: expected a scalar tensor \(reduce it",
        ),
        (
            lambda loss: {"logits": loss},
            r"train_step returned a mapping with keys \['logits'\]: expected a scalar loss tensor",
        ),
        (lambda loss: loss.item(), r"train_step returned a float as its loss"),
    ],
)
def test_what_the_step_returns_is_checked_before_training_saying_what_it_was(returned, message):
    class Wrong(LanguageModelTrainer):
        def train_step(self, batch):
            return returned(super().train_step(batch))

    torch.manual_seed(0)
    with pytest.raises(DataError, match=message):
        Wrong(epochs=1, progress=False).fit(WordLM(), bptt_batches(_corpus(400), 4, 10))


def test_a_step_that_fails_on_the_first_batch_is_named_with_the_batch():
    class Failing(trainwell.Trainer):
        def train_step(self, batch):
            inputs, targets = batch
            output, _ = self.model(inputs)  # forgets the hidden state
            return F.cross_entropy(output.reshape(-1, VOCAB), targets.reshape(-1))

    with pytest.raises(
        DataError,
        match=r"train_step failed on the first batch of train_loader \(inputs: a tensor of shape \(10, 4\), "
        r"targets: a tensor of shape \(10, 4\)\) with TypeError: .*missing 1 required positional argument: 'hidden'",
    ):
        Failing(epochs=1, progress=False).fit(WordLM(), bptt_batches(_corpus(400), 4, 10))


def test_an_eval_step_is_checked_on_the_first_validation_batch():
    class HalfOutputs(LanguageModelTrainer):
        def eval_step(self, batch):
            return {"loss": super().eval_step(batch)["loss"], "outputs": torch.zeros(3, VOCAB)}

    class Unfit(LanguageModelTrainer):
        def eval_step(self, batch):
            out = super().eval_step(batch)
            return {**out, "targets": out["targets"][:5]}

    batches = bptt_batches(_corpus(400), 4, 10)
    with pytest.raises(
        DataError,
        match=r"eval_step returned a mapping with keys \['loss', 'outputs'\]: expected 'outputs' and 'targets' together",
    ):
        HalfOutputs(epochs=1, progress=False).fit(WordLM(), batches, batches)
    with pytest.raises(
        DataError,
        match=r"eval_step returned outputs a tensor of shape \(40, 30\) and targets a tensor of shape \(5,\), on which no metric",
    ):
        Unfit(epochs=1, progress=False).fit(WordLM(), batches, batches)
