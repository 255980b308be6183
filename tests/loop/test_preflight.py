import pytest
import torch
from torch import nn

from trainwell import DataError, ModelError
from trainwell.loop.preflight import check_inputs, check_loader, loader_length, summarize


def test_check_inputs_names_what_is_wrong():
    with pytest.raises(ModelError, match=r"model=<class .*Linear'> is a type: expected a torch.nn.Module"):
        check_inputs(nn.Linear, [(torch.zeros(1), torch.zeros(1))], None)
    with pytest.raises(DataError, match="val_loader is empty"):
        check_inputs(nn.Linear(1, 1), [(torch.zeros(1), torch.zeros(1))], [])


@pytest.mark.parametrize(
    ("loader", "message"),
    [(None, "data=None"), (torch.zeros(3), "data is a tensor"), (iter([1]), "one-shot iterator"), ([], "data is empty"), (5, "data is a int")],
)
def test_check_loader(loader, message):
    with pytest.raises(DataError, match=message):
        check_loader(loader, "data")


def test_loader_length_of_streams_is_none():
    class Stream:
        def __iter__(self):
            yield from ()

    assert loader_length([1, 2]) == 2 and loader_length(Stream()) is None


def test_summarize_falls_back_to_one_sample_when_the_batch_does_not_fit():
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def forward(self, inputs):
            if len(inputs) > 1:
                raise torch.OutOfMemoryError("simulated")
            return self.layer(inputs)

    table = summarize(Small(), torch.zeros(8, 2), torch.device("cpu"))
    assert table.startswith("Small: input (1, 2) -> output (1, 1)")
