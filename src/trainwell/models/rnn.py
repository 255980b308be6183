"""RNN: LSTM, GRU or Elman networks for sequence classification, regression and forecasting."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from trainwell.exceptions import ConfigError
from trainwell.models.checks import check_choice, check_dropout, check_positive
from trainwell.models.init import init_weights

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
POOLINGS = ("last", "mean", "max")


class RNN(nn.Module):
    """A recurrent encoder (LSTM, GRU or Elman RNN) with a Linear head on its last or pooled state.

    Inputs are either continuous features ``(N, T, input_size)`` (``(N, T)`` when
    ``input_size`` is 1) or, with ``vocab_size`` set, token ids ``(N, T)`` that an embedding
    turns into vectors. Sequences of different lengths are handled by packing, so padded
    positions never reach the recurrence: pass ``lengths`` (one per sequence; padding at the
    end), or, for token ids, pad with ``padding_idx`` and the lengths are read from the ids.

    Args:
        input_size: Features per time step (the embedding size when ``vocab_size`` is set).
        hidden_size: Width of the recurrent state.
        output_size: Outputs of the head: classes, or values to forecast.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh Elman cell).
        num_layers: Stacked recurrent layers.
        bidirectional: Also read each sequence backwards and concatenate both states.
        dropout: Dropout between stacked layers and before the head.
        vocab_size: Size of the token vocabulary; None for continuous inputs.
        padding_idx: The token id used for padding (only with ``vocab_size``).
        pooling: ``"last"`` (the final state of each sequence), ``"mean"`` or ``"max"`` over
            the states of its real (unpadded) positions.

    Example:
        >>> model = RNN(input_size=1, hidden_size=32, output_size=1, cell="gru")
        >>> model(torch.randn(8, 20, 1)).shape
        torch.Size([8, 1])
        >>> tokens = RNN(input_size=16, hidden_size=32, output_size=3, vocab_size=100)
        >>> tokens(torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        padding_idx: int = 0,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
            ("num_layers", num_layers),
        ):
            check_positive(name, value)
        check_choice("cell", cell, CELLS)
        check_choice("pooling", pooling, POOLINGS)
        check_dropout(dropout)
        if vocab_size is not None:
            check_positive("vocab_size", vocab_size)
            if not 0 <= padding_idx < vocab_size:
                raise ConfigError(
                    f"padding_idx={padding_idx} is out of range: expected a token id from 0 to {vocab_size - 1}."
                )
        self.input_size, self.cell, self.pooling = input_size, cell, pooling
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(vocab_size, input_size, padding_idx=padding_idx) if vocab_size else None
        self.recurrent = CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            # torch applies this between stacked layers only, and warns when there is one layer.
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)
        init_weights(self, output_layer=self.head)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embedding is not None:
            if inputs.dim() != 2 or inputs.is_floating_point():
                raise ValueError(
                    f"RNN with vocab_size got inputs {inputs.dtype} {tuple(inputs.shape)}: expected integer token ids (N, T)."
                )
            if lengths is None:
                lengths = (inputs != self.padding_idx).sum(dim=1)
            inputs = self.embedding(inputs)
        elif inputs.dim() == 2 and self.input_size == 1:
            inputs = inputs.unsqueeze(-1)
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(
                f"RNN got inputs of shape {tuple(inputs.shape)}: expected (N, T, {self.input_size}) "
                "(batch, time steps, features per step)."
            )
        steps = inputs.shape[1]
        if lengths is None:
            outputs, state = self.recurrent(inputs)
            valid = None
        else:
            # Packing needs lengths on the CPU and of at least 1: an all-padding row reads its first step.
            lengths = lengths.to("cpu", torch.int64).clamp(1, steps)
            packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
            packed_outputs, state = self.recurrent(packed)
            outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=steps)
            valid = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
            valid = valid.to(outputs.device).unsqueeze(-1)
        return self.head(self.dropout(self._pool(outputs, state, valid)))

    def _pool(self, outputs: torch.Tensor, state: torch.Tensor | tuple, valid: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state
            # The last layer's final state; with two directions, forward and backward concatenated.
            directions = 2 if self.recurrent.bidirectional else 1
            return torch.cat(list(hidden[-directions:]), dim=-1)
        if self.pooling == "mean":
            if valid is None:
                return outputs.mean(dim=1)
            return (outputs * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        if valid is not None:
            outputs = outputs.masked_fill(~valid, float("-inf"))
        return outputs.max(dim=1).values
