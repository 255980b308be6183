"""Transformer: an attention encoder for token ids, continuous sequences or image patches."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainwell.exceptions import ConfigError
from trainwell.models.checks import check_choice, check_dropout, check_positive
from trainwell.models.init import init_weights

POSITIONS = ("learned", "sinusoidal")
POOLINGS = ("cls", "mean")


class Transformer(nn.Module):
    """A pre-norm Transformer encoder (``nn.TransformerEncoderLayer``) with a Linear head.

    Three kinds of input, chosen by the arguments:

    - token ids ``(N, T)`` with ``vocab_size`` set: an embedding; positions equal to
      ``padding_idx`` are masked out of attention and pooling;
    - continuous features ``(N, T, input_size)``: a Linear projection;
    - images ``(N, input_size, H, W)`` with ``patch_size`` set: non-overlapping patches, each
      projected to ``d_model`` (ViT-style); ``input_size`` is then the number of channels.

    Sequences of different lengths: pad at the end and pass ``lengths`` (or, for token ids,
    pad with ``padding_idx``); padded positions are masked, so their values do not matter.

    Args:
        output_size: Outputs of the head: classes, or values to predict.
        input_size: Features per position, or image channels with ``patch_size``; None with
            ``vocab_size``.
        vocab_size: Size of the token vocabulary, for token-id inputs.
        d_model: Width of the encoder.
        num_heads: Attention heads; must divide ``d_model``.
        num_layers: Encoder layers.
        dim_feedforward: Width of each layer's feed-forward block; None means ``4 * d_model``.
        dropout: Dropout inside the encoder layers and before the head.
        max_len: The longest sequence (number of patches for images) the positions cover.
        positions: ``"learned"`` position embeddings or fixed ``"sinusoidal"`` ones.
        pooling: ``"cls"`` (a learned summary token read by the head) or ``"mean"`` over the
            real positions.
        padding_idx: The token id used for padding (with ``vocab_size``).
        patch_size: Side of the square image patches; None for sequences.

    Example:
        >>> model = Transformer(output_size=5, vocab_size=30, d_model=32, num_heads=4, num_layers=1)
        >>> model(torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])).shape
        torch.Size([2, 5])
        >>> vit = Transformer(output_size=10, input_size=1, patch_size=4, d_model=32, num_layers=1)
        >>> vit(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        output_size: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        max_len: int = 512,
        positions: str = "learned",
        pooling: str = "cls",
        padding_idx: int = 0,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("output_size", output_size),
            ("d_model", d_model),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("max_len", max_len),
        ):
            check_positive(name, value)
        if (input_size is None) == (vocab_size is None):
            raise ConfigError(
                f"input_size={input_size!r} and vocab_size={vocab_size!r}: set exactly one of them, "
                "vocab_size for token ids, input_size for continuous features or image channels."
            )
        if patch_size is not None and input_size is None:
            raise ConfigError(
                f"patch_size={patch_size} needs input_size, the number of image channels (e.g. input_size=3)."
            )
        if d_model % num_heads:
            raise ConfigError(
                f"num_heads={num_heads} does not divide d_model={d_model}: choose e.g. num_heads={_divisor(d_model, num_heads)}."
            )
        check_choice("positions", positions, POSITIONS)
        check_choice("pooling", pooling, POOLINGS)
        check_dropout(dropout)
        self.input_size, self.vocab_size, self.patch_size = input_size, vocab_size, patch_size
        self.padding_idx, self.pooling, self.max_len = padding_idx, pooling, max_len
        if vocab_size is not None:
            check_positive("vocab_size", vocab_size)
            if not 0 <= padding_idx < vocab_size:
                raise ConfigError(
                    f"padding_idx={padding_idx} is out of range: expected a token id from 0 to {vocab_size - 1}."
                )
            self.embed: nn.Module = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        elif patch_size is not None:
            check_positive("patch_size", patch_size)
            check_positive("input_size", input_size)
            self.embed = nn.Conv2d(input_size, d_model, kernel_size=patch_size, stride=patch_size)
        else:
            check_positive("input_size", input_size)
            self.embed = nn.Linear(input_size, d_model)
        # One extra position for the summary token.
        if positions == "learned":
            self.position = nn.Embedding(max_len + 1, d_model)
        else:
            self.register_buffer("sinusoid", _sinusoids(max_len + 1, d_model), persistent=False)
            self.position = None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward or 4 * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            # Pre-norm trains stably without the warm-up post-norm layers depend on.
            norm_first=True,
        )
        # Nested tensors do not apply to pre-norm layers; saying so silences torch's warning.
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, output_size)
        init_weights(self, output_layer=self.head)
        if self.cls_token is not None:
            # Same scale as a token embedding (init.py: std 1/sqrt(dim)).
            nn.init.normal_(self.cls_token, std=1.0 / math.sqrt(d_model))

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        tokens, padded = self._embed(inputs, lengths)
        batch, steps, _ = tokens.shape
        if steps > self.max_len:
            raise ValueError(
                f"Transformer got {steps} positions, more than max_len={self.max_len}: build it with max_len ≥ {steps}."
            )
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
            if padded is not None:
                padded = torch.cat([padded.new_zeros(batch, 1), padded], dim=1)
        length = tokens.shape[1]
        if self.position is not None:
            tokens = tokens + self.position.weight[:length]
        else:
            tokens = tokens + self.sinusoid[:length].to(tokens.dtype)
        encoded = self.encoder(tokens, src_key_padding_mask=padded)
        if self.cls_token is not None:
            pooled = encoded[:, 0]
        elif padded is None:
            pooled = encoded.mean(dim=1)
        else:
            real = (~padded).unsqueeze(-1).to(encoded.dtype)
            pooled = (encoded * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
        return self.head(self.dropout(pooled))

    def _embed(self, inputs: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Vectors ``(N, T, d_model)`` and the padding mask (True = padded), or None without padding."""
        if self.vocab_size is not None:
            if inputs.dim() != 2 or inputs.is_floating_point():
                raise ValueError(
                    f"Transformer with vocab_size got inputs {inputs.dtype} {tuple(inputs.shape)}: expected integer token ids (N, T)."
                )
            padded = inputs == self.padding_idx if lengths is None else None
            vectors = self.embed(inputs)
        elif self.patch_size is not None:
            if inputs.dim() == 3:
                inputs = inputs.unsqueeze(1)
            if inputs.dim() != 4 or inputs.shape[1] != self.input_size:
                raise ValueError(
                    f"Transformer with patch_size got inputs of shape {tuple(inputs.shape)}: expected (N, {self.input_size}, H, W) images."
                )
            return self.embed(inputs).flatten(2).transpose(1, 2), None
        else:
            if inputs.dim() == 2 and self.input_size == 1:
                inputs = inputs.unsqueeze(-1)
            if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
                raise ValueError(
                    f"Transformer got inputs of shape {tuple(inputs.shape)}: expected (N, T, {self.input_size})."
                )
            padded = None
            vectors = self.embed(inputs)
        if lengths is not None:
            steps = vectors.shape[1]
            padded = torch.arange(steps, device=vectors.device).unsqueeze(0) >= lengths.to(vectors.device).unsqueeze(1)
        if padded is not None:
            # A sequence that is all padding would leave attention nothing to attend to (NaN): keep its first position.
            padded = padded.clone()
            padded[:, 0] &= ~padded.all(dim=1)
        return vectors, padded


def _sinusoids(length: int, dim: int) -> torch.Tensor:
    """The fixed position encodings of Vaswani et al. (2017): sines and cosines of geometric frequencies."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def _divisor(d_model: int, near: int) -> int:
    return min((h for h in range(1, d_model + 1) if d_model % h == 0), key=lambda h: abs(h - near))
