"""Weight initialisation chosen per layer, applied by default to trainwell's models.

The reasons, layer by layer:

- **Linear and convolution layers feeding a ReLU**: Kaiming (He) normal, fan-in mode. It keeps
  the variance of activations constant through ReLU layers (He et al., 2015); torch's default
  (Kaiming-uniform with a=sqrt(5)) shrinks activations by roughly sqrt(3) per layer instead.
  Biases start at zero. Every other hidden Linear or convolution gets the same: in trainwell's
  models those are the Transformer's feed-forward layers (GELU, which scales like ReLU), its
  input and patch projections, whose outputs a LayerNorm rescales before attention reads them.
- **The output layer** (the last Linear of the model): Xavier (Glorot) uniform. No ReLU follows
  it, and logits of unit-order scale give a first loss near log(classes).
- **Attention projections**: Xavier uniform (what nn.MultiheadAttention uses for its packed
  projection), zero biases.
- **Recurrent layers**: orthogonal hidden-to-hidden weights, which preserve the norm of the
  state through time and so fight vanishing and exploding gradients; Xavier input weights; zero
  biases, except the LSTM forget gate at 1 so the cell remembers by default (Jozefowicz et al., 2015).
- **Normalisation layers**: weight 1, bias 0 (the identity at start).
- **Embeddings**: normal with standard deviation 1/sqrt(dim), so embedded vectors have unit-order
  norm; the padding row is zero. Learned position embeddings are embeddings too, and the
  Transformer's summary token uses the same scale.
"""

from __future__ import annotations

import math

from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)


def init_weights(model: nn.Module, output_layer: nn.Module | None = None) -> nn.Module:
    """Initialise every layer of ``model`` as described in this module; return ``model``.

    Args:
        model: Any module; layers of types not listed above keep their own initialisation.
        output_layer: The layer producing the model's outputs; None takes the last
            ``nn.Linear`` registered in ``model``.

    Example:
        >>> model = init_weights(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
        >>> float(model[0].bias.detach().abs().sum())
        0.0
    """
    if output_layer is None:
        linears = [
            module
            for module in model.modules()
            if type(module) is nn.Linear  # not attention's out_proj, a Linear subclass
        ]
        output_layer = linears[-1] if linears else None
    # nn.MultiheadAttention owns its output projection (a Linear): it is initialised with the
    # attention, not as a ReLU layer.
    inside_attention = {
        id(sub) for module in model.modules() if isinstance(module, nn.MultiheadAttention) for sub in module.modules()
    }
    for module in model.modules():
        if id(module) in inside_attention and not isinstance(module, nn.MultiheadAttention):
            continue
        if module is output_layer:
            nn.init.xavier_uniform_(module.weight)
            _zero_bias(module)
        elif isinstance(module, nn.MultiheadAttention):
            _init_attention(module)
        elif isinstance(module, (nn.Linear, *_CONVS)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            _zero_bias(module)
        elif isinstance(module, _RECURRENT):
            _init_recurrent(module)
        elif isinstance(module, _NORMS):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.embedding_dim))
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
    return model


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _init_attention(attention: nn.MultiheadAttention) -> None:
    for name, parameter in attention.named_parameters():
        if parameter.dim() >= 2:
            nn.init.xavier_uniform_(parameter)
        elif "bias" in name:
            nn.init.zeros_(parameter)


def _init_recurrent(rnn: nn.RNNBase) -> None:
    gates = {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)
    for name, parameter in rnn.named_parameters():
        if name.startswith("weight_hh"):
            # One orthogonal block per gate: the stacked matrix is (gates * hidden, hidden).
            for block in parameter.data.chunk(gates, dim=0):
                nn.init.orthogonal_(block)
        elif name.startswith("weight_ih"):
            nn.init.xavier_uniform_(parameter)
        elif name.startswith("bias"):
            nn.init.zeros_(parameter)
            if rnn.mode == "LSTM" and name.startswith("bias_ih"):
                # Gate order i, f, g, o: the forget gate is the second quarter.
                hidden = parameter.shape[0] // 4
                parameter.data[hidden : 2 * hidden].fill_(1.0)
