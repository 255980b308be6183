import pytest
import torch

from trainwell.callbacks import Callback, CallbackList


def test_every_hook_is_a_no_op_by_default():
    callback = Callback()
    for hook in ("on_train_begin", "on_train_end"):
        assert getattr(callback, hook)(None) is None
    assert callback.on_epoch_end(None, epoch=1, metrics={}) is None
    assert callback.state_dict() == {}


def test_batch_hooks_only_reach_callbacks_that_override_them():
    calls = []

    class Counting(Callback):
        def on_batch_end(self, trainer, batch_index, loss, **kwargs):
            calls.append((batch_index, kwargs["stepped"]))

    callbacks = CallbackList([Callback(), Counting()])
    assert len(callbacks._batch_end) == 1 and callbacks._batch_begin == []
    callbacks.on_batch_end(None, 3, loss=torch.tensor(1.0), stepped=False)
    assert calls == [(3, False)]


def test_non_callbacks_are_refused_by_name():
    with pytest.raises(TypeError, match="callbacks contains 'oops' of type str"):
        CallbackList(["oops"])
