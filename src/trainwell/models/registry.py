"""The model registry: every built-in model by name, with its arguments, for code, configs and the CLI.

``build("cnn", in_channels=1, num_classes=10, channels=[32, 64])`` checks the name and each
argument (type and range) before anything heavy is imported; ``trainwell models`` prints
:func:`describe`. This module imports neither torch nor the models themselves, so listing and
validating stay instant.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from trainwell.exceptions import ConfigError

Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


@dataclass(frozen=True)
class Argument:
    """One argument of a model: its name, accepted values, default and meaning.

    ``from_data`` marks the sizes a recipe (``trainwell train``) reads from the data.
    """

    name: str
    annotation: Any
    default: Any
    expects: str
    help: str
    from_data: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model of the registry.

    Attributes:
        name: Registry name (``--model NAME``).
        summary: One line saying what it is for.
        target: ``"module:attribute"`` of the class or function that builds it.
        inputs: Kinds of data it takes: ``tabular``, ``images``, ``series``, ``tokens``.
        arguments: Its arguments, in signature order.
        fixed: Arguments the registry name fixes (``lstm`` is the RNN with ``cell="lstm"``).
    """

    name: str
    summary: str
    target: str
    inputs: tuple[str, ...]
    arguments: tuple[Argument, ...]
    fixed: dict[str, Any] = field(default_factory=dict)

    def argument(self, name: str) -> Argument | None:
        return next((argument for argument in self.arguments if argument.name == name), None)


def _rnn_arguments() -> tuple[Argument, ...]:
    return (
        Argument(
            "input_size",
            Positive,
            None,
            "an integer ≥ 1",
            "features per step; for token ids, the embedding width (then settable, default 32)",
            from_data=True,
        ),
        Argument("hidden_size", Positive, 64, "an integer ≥ 1", "width of the recurrent state"),
        Argument("output_size", Positive, None, "an integer ≥ 1", "classes or values to predict", from_data=True),
        Argument("num_layers", Positive, 1, "an integer ≥ 1", "stacked recurrent layers"),
        Argument("bidirectional", bool, False, "true or false", "also read sequences backwards"),
        Argument("dropout", Fraction, 0.0, "a number from 0 to below 1", "dropout between layers and before the head"),
        Argument(
            "vocab_size",
            Positive | None,
            None,
            "an integer ≥ 1",
            "token vocabulary size, for token ids",
            from_data=True,
        ),
        Argument("padding_idx", Annotated[int, Field(ge=0)], 0, "an integer ≥ 0", "the padding token id"),
        Argument(
            "pooling",
            Literal["last", "mean", "max"],
            "last",
            "'last', 'mean' or 'max'",
            "read the last state, or pool all states",
        ),
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mlp",
            "Linear-BatchNorm-ReLU-Dropout layers: tabular data and flattened small images",
            "trainwell.models.registry:_build_mlp",
            ("tabular", "images", "series"),
            (
                Argument("input_size", Positive, None, "an integer ≥ 1", "input features", from_data=True),
                Argument(
                    "output_size", Positive, None, "an integer ≥ 1", "classes or values to predict", from_data=True
                ),
                Argument(
                    "hidden", list[Positive], (256, 128), "a list of integers ≥ 1, e.g. 256,128", "hidden layer widths"
                ),
                Argument("dropout", Fraction, 0.3, "a number from 0 to below 1", "dropout after each hidden layer"),
                Argument("batch_norm", bool, True, "true or false", "BatchNorm after each hidden Linear"),
                Argument(
                    "activation",
                    Literal["relu", "gelu", "silu", "tanh", "leaky_relu"],
                    "relu",
                    "'relu', 'gelu', 'silu', 'tanh' or 'leaky_relu'",
                    "hidden activation",
                ),
            ),
        ),
        ModelSpec(
            "cnn",
            "Conv-BatchNorm-ReLU-MaxPool blocks, a dense head on the pooled map: images of any size",
            "trainwell.models.cnn:CNN",
            ("images",),
            (
                Argument("in_channels", Positive, None, "an integer ≥ 1", "image channels", from_data=True),
                Argument("num_classes", Positive, None, "an integer ≥ 1", "classes", from_data=True),
                Argument(
                    "channels",
                    list[Positive],
                    (32, 64, 128),
                    "a list of integers ≥ 1, e.g. 32,64,128",
                    "output channels of each block",
                ),
                Argument("kernel_size", Positive, 3, "an odd integer ≥ 1", "convolution kernel size"),
                Argument("convs_per_block", Positive, 2, "an integer ≥ 1", "convolutions before each pooling"),
                Argument("dropout", Fraction, 0.1, "a number from 0 to below 1", "dropout before the output layer"),
                Argument("batch_norm", bool, True, "true or false", "BatchNorm after each convolution"),
                Argument(
                    "pooled_size",
                    Positive,
                    2,
                    "an integer ≥ 1",
                    "side of the grid the last map is average-pooled to (1: global average pooling)",
                ),
                Argument(
                    "hidden",
                    Annotated[int, Field(ge=0)],
                    0,
                    "an integer ≥ 0",
                    "width of the dense layer before the output layer (0: none)",
                ),
            ),
        ),
        *(
            ModelSpec(
                cell,
                f"{label} encoder with a Linear head: sequence classification and forecasting",
                "trainwell.models.rnn:RNN",
                ("series", "tokens"),
                _rnn_arguments(),
                fixed={"cell": cell},
            )
            for cell, label in (("lstm", "LSTM"), ("gru", "GRU"), ("rnn", "Elman (tanh) RNN"))
        ),
        ModelSpec(
            "transformer",
            "pre-norm Transformer encoder with a CLS or mean-pooled head: tokens, sequences, image patches",
            "trainwell.models.transformer:Transformer",
            ("series", "tokens", "images"),
            (
                Argument(
                    "output_size", Positive, None, "an integer ≥ 1", "classes or values to predict", from_data=True
                ),
                Argument(
                    "input_size",
                    Positive | None,
                    None,
                    "an integer ≥ 1",
                    "features per step, or image channels",
                    from_data=True,
                ),
                Argument(
                    "vocab_size",
                    Positive | None,
                    None,
                    "an integer ≥ 1",
                    "token vocabulary size, for token ids",
                    from_data=True,
                ),
                Argument("d_model", Positive, 64, "an integer ≥ 1", "width of the encoder"),
                Argument("num_heads", Positive, 4, "an integer ≥ 1 dividing d_model", "attention heads"),
                Argument("num_layers", Positive, 2, "an integer ≥ 1", "encoder layers"),
                Argument(
                    "dim_feedforward",
                    Positive | None,
                    None,
                    "an integer ≥ 1",
                    "feed-forward width (default 4 * d_model)",
                ),
                Argument(
                    "dropout", Fraction, 0.1, "a number from 0 to below 1", "dropout in the layers and before the head"
                ),
                Argument("max_len", Positive, 512, "an integer ≥ 1", "longest sequence (or number of patches)"),
                Argument(
                    "positions",
                    Literal["learned", "sinusoidal"],
                    "learned",
                    "'learned' or 'sinusoidal'",
                    "position encoding",
                ),
                Argument("pooling", Literal["cls", "mean"], "cls", "'cls' or 'mean'", "what the head reads"),
                Argument("padding_idx", Annotated[int, Field(ge=0)], 0, "an integer ≥ 0", "the padding token id"),
                Argument(
                    "patch_size",
                    Positive | None,
                    None,
                    "an integer ≥ 1",
                    "side of image patches (ViT-style); unset for sequences",
                ),
            ),
        ),
    )
}


def names() -> list[str]:
    """The registered model names, in listing order."""
    return list(MODELS)


def spec(name: str) -> ModelSpec:
    """The registry entry called ``name``.

    Raises:
        ConfigError: ``name`` is not registered (with the closest name, if any).
    """
    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(str(name), list(MODELS), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else " Run 'trainwell models' to see them with their arguments."
    raise ConfigError(f"model={name!r} is not a known model: expected one of {', '.join(map(repr, MODELS))}.{hint}")


def check_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate ``arguments`` for model ``name``; return them converted (e.g. ``1`` to ``1.0``).

    A single value given where a list is expected becomes a one-item list (``channels=32``).

    Raises:
        ConfigError: the model is unknown, an argument is unknown or fixed by the name, or a
            value is of the wrong type or out of range; every problem is reported at once.
    """
    model = spec(name)
    checked, problems = {}, []
    for key, value in arguments.items():
        argument = model.argument(key)
        if argument is None:
            known = [a.name for a in model.arguments]
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"Did you mean {close[0]!r}?" if close else f"Its arguments: {', '.join(known)}."
            if key in model.fixed:
                hint = f"The name {name!r} fixes {key}={model.fixed[key]!r}; choose another model name instead."
            problems.append(f"{key!r} is not an argument of model {name!r}. {hint}")
            continue
        candidate = value
        if _is_list(argument.annotation):
            candidate = list(value) if isinstance(value, (list, tuple)) else [value]
        try:
            checked[key] = TypeAdapter(argument.annotation).validate_python(candidate, strict=True)
        except ValidationError:
            problems.append(
                f"model argument {key}={value!r} is invalid for model {name!r}: expected {argument.expects}."
            )
    if problems:
        raise ConfigError("\n".join(problems))
    return checked


def build(name: str, **arguments: Any) -> Any:
    """Build the registered model ``name`` with ``arguments``.

    Args:
        name: A name from :func:`names`: ``mlp``, ``cnn``, ``lstm``, ``gru``, ``rnn``, ``transformer``.
        **arguments: The model's arguments (see ``trainwell models``); sizes marked "from the
            data" must be given here, as no data is seen.

    Returns:
        The model, an ``nn.Module`` with trainwell's weight initialisation.

    Raises:
        ConfigError: unknown model or argument, a bad value, or a required size missing.

    Example:
        >>> build("cnn", in_channels=1, num_classes=10, channels=32).head.out_features
        10
        >>> build("lstm", input_size=1, hidden_size=16, output_size=1).cell
        'lstm'
    """
    model = spec(name)
    checked = check_arguments(name, arguments)
    missing = [a.name for a in model.arguments if a.from_data and a.annotation is Positive and a.name not in checked]
    if missing:
        raise ConfigError(
            f"model {name!r} needs {', '.join(missing)}: pass {', '.join(f'{m}=...' for m in missing)} to build()."
        )
    defaults = {a.name: a.default for a in model.arguments if not a.from_data and a.name not in checked}
    module_name, attribute = model.target.split(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    try:
        return factory(**model.fixed, **defaults, **checked)
    except RuntimeError as error:
        # The allocator's refusal of a size no machine here has (e.g. a crafted data.json's input size):
        # say which sizes asked for it instead of the allocator's traceback.
        if "allocate" not in str(error):
            raise
        shown = ", ".join(f"{key}={_show(value)}" for key, value in {**defaults, **checked}.items())
        asked = re.search(r"allocate (\d+) bytes", str(error))
        size = f" {int(asked.group(1)) / 1e9:,.1f} GB at once," if asked else ""
        raise ConfigError(
            f"model {name!r} ({shown}) asked for{size} more memory than this machine can allocate: lower the sizes, "
            "or check the data's sizes (a run's data.json) if they come from there."
        ) from None


def describe(name: str | None = None) -> str:
    """Every model (or just ``name``) with its arguments, defaults and meaning, as text."""
    selected = [spec(name)] if name is not None else list(MODELS.values())
    blocks = []
    for model in selected:
        lines = [f"{model.name}: {model.summary} (data: {', '.join(model.inputs)})"]
        width = max(len(a.name) for a in model.arguments)
        for argument in model.arguments:
            default = "from the data" if argument.from_data else f"default {_show(argument.default)}"
            lines.append(f"  {argument.name:<{width}}  {argument.help}; {default}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _build_mlp(input_size: int, output_size: int, hidden: list[int] = (256, 128), **options: Any) -> Any:
    from trainwell.models.mlp import MLP

    return MLP([input_size, *hidden, output_size], **options)


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)
