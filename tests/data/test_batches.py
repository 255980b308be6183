import re

import pytest
import torch
from torch import nn

from trainwell import DataError
from trainwell.data.batches import count_samples, forward, move_to, split_batch


def test_split_batch_accepts_pairs_and_dicts():
    x, y = torch.zeros(3, 2), torch.zeros(3)
    assert split_batch((x, y))[0] is x and split_batch([x, y])[1] is y
    assert split_batch({"inputs": x, "targets": y, "extra": 1})[0] is x


@pytest.mark.parametrize(("batch", "described"), [(torch.zeros(2), "a tensor of shape (2,)"), ({"x": 1}, "a mapping with keys ['x']"), (3, "a int")])
def test_split_batch_describes_what_it_got(batch, described):
    with pytest.raises(DataError, match=re.escape(f"val_loader yielded a batch that is {described}")):
        split_batch(batch, "val_loader")


def test_forward_unpacks_tuples_and_mappings():
    class Two(nn.Module):
        def forward(self, a, b=None):
            return a + (b if b is not None else 0)

    model, a, b = Two(), torch.ones(2), torch.ones(2)
    assert torch.equal(forward(model, a), a)
    assert torch.equal(forward(model, (a, b)), 2 * a)
    assert torch.equal(forward(model, {"a": a, "b": b}), 2 * a)


def test_move_to_and_count_samples():
    nested = {"x": (torch.zeros(5, 2), [torch.zeros(5)]), "n": 3}
    moved = move_to(nested, torch.device("cpu"))
    assert moved["n"] == 3 and isinstance(moved["x"][1], list)
    assert count_samples(nested["x"]) == 5 and count_samples({"a": torch.zeros(7, 1)}) == 7


def test_channels_last_converts_only_image_tensors():
    from trainwell.data.batches import channels_last

    images, tokens = torch.randn(2, 3, 4, 4), torch.zeros(2, 5, dtype=torch.long)
    out = channels_last({"images": images, "tokens": tokens})
    assert out["images"].is_contiguous(memory_format=torch.channels_last) and torch.equal(out["images"], images)
    assert out["tokens"] is tokens
