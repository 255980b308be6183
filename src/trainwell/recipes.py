"""Recipes: a run's whole configuration (data, model, training) turned into a trained model.

``RunConfig`` is what ``trainwell train`` and its YAML files describe: every
:class:`~trainwell.config.TrainConfig` field plus the data and the model to build. It is
written to the run directory's ``config.yaml`` and can be re-run as is with
``trainwell train --config runs/<name>/config.yaml --out runs/<new-name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt, model_validator

from trainwell.config import Schedule, TrainConfig, config_error
from trainwell.exceptions import ConfigError
from trainwell.models.registry import MODELS, check_arguments, spec

# The defaults the built-in recipe was tuned with (see README, "What is measured"): one-cycle
# at a peak lr of 1e-2 beat a constant 1e-3 and 3e-3 on digits over 6 seeds, for batches of 64.
REFERENCE_BATCH_SIZE = 64
RECIPE_LR = 1e-2

ModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]

# Per dataset and model: the options that differ from RunConfig's defaults, each chosen by
# measurement over several seeds (benchmarks/models.py; README, "What is measured"). Options the
# user sets always win; a model_args entry fills only the arguments the user left out.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "mlp"): {"model_args": {"hidden": [256, 128], "dropout": 0.2}},
    # Two convolutions per block: 0.990 mean accuracy over 10 seeds (worst 0.978), against 0.985
    # (worst 0.975) with one, at twice the time (4 s a run).
    ("digits", "cnn"): {"model_args": {"convs_per_block": 2}},
    # 2x2 patches: 16 tokens of an 8x8 digit (0.918 mean accuracy over 3 seeds, untuned beyond that).
    ("digits", "transformer"): {"model_args": {"patch_size": 2}},
    # The small tabular sets: batches of 64 leave iris 2 steps per epoch (0.847 mean accuracy over
    # 5 seeds at 30 epochs); batches of 16 reach 0.987.
    ("iris", "mlp"): {"batch_size": 16, "epochs": 30},
    ("wine", "mlp"): {"batch_size": 16, "epochs": 30},
    # 256-128 units overfit 455 samples (0.977 against logistic regression's 0.981, 5 seeds); one
    # layer of 64 reached 0.984 against 0.982 (10 seeds).
    ("breast_cancer", "mlp"): {"batch_size": 16, "epochs": 30, "model_args": {"hidden": [64], "dropout": 0.3}},
    # 231 windows: batches of 16 and up to 50 epochs (early stopping ends most runs near 20)
    # against batch 64 and 10 epochs: val_mae 0.409 -> 0.373 (LSTM, 3 seeds), 0.398 -> 0.374
    # (Elman RNN, 5 seeds); the GRU was 0.374 -> 0.361 (3 seeds).
    **{("sunspots", cell): {"batch_size": 16, "epochs": 50} for cell in ("lstm", "gru", "rnn")},
    # At lr 1e-2 the Transformer reached 0.60 accuracy, 0.68 at 3e-3 and 0.67 at 1e-3; without
    # dropout 0.73 (10 epochs underfit rather than overfit).
    ("word_language", "transformer"): {"lr": 3e-3, "model_args": {"dropout": 0.0}},
}
# The model a dataset gets when none is named: the best measured for its kind of data (on
# word_language an LSTM reached 0.80 accuracy, the Transformer 0.73 in 4x the time).
DEFAULT_MODELS = {"sunspots": "lstm", "word_language": "lstm"}
# Datasets whose samples are images that a model without a tabular input reads as (N, C, H, W).
IMAGE_DATA = ("digits",)
# Embedding width for token ids when an RNN is built from data without input_size set.
TOKEN_EMBEDDING_SIZE = 32


def recipe_defaults(data: str, model: str) -> dict[str, Any]:
    """The options the recipe for ``data`` and ``model`` sets (empty where none was tuned)."""
    return RECIPES.get((data, model), {})


class RunConfig(TrainConfig):
    """A complete run: :class:`TrainConfig` plus the data and the model.

    Args:
        data: A bundled dataset: ``digits`` (default), ``iris``, ``wine``, ``breast_cancer``,
            ``sunspots``, ``word_language``.
        val_fraction: Share of the data held out for validation (stratified, or the most
            recent part of a time series).
        batch_size: Training batch size; the lr is rescaled by ``lr_scaling`` when it differs
            from ``reference_batch_size``.
        model: A registered model name (``trainwell models`` lists them): ``mlp``, ``cnn``,
            ``lstm``, ``gru``, ``rnn``, ``transformer``. Left out: ``lstm`` for ``sunspots`` and
            ``word_language``, ``mlp`` for the others.
        model_args: The model's arguments, e.g. ``{"channels": [32, 64]}``; those left out take
            the recipe's or the model's defaults (all are recorded), and its sizes (inputs,
            outputs, vocabulary) come from the data.

    Its training defaults differ from :class:`TrainConfig`'s where the recipe was tuned:
    one-cycle peaking at lr 1e-2, seed 0, reference batch size 64; and per dataset and model
    (``RECIPES``), e.g. smaller batches for the small tabular sets. Options given explicitly
    always win.

    Example:
        >>> config = RunConfig(data="digits", model="cnn", model_args={"channels": [16, 32]})
        >>> config.model_args["channels"], config.schedule
        ([16, 32], 'onecycle')
    """

    data: str = "digits"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: StrictInt = Field(REFERENCE_BATCH_SIZE, ge=1, le=1_000_000)
    model: ModelName = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    lr: float = Field(RECIPE_LR, ge=1e-6, le=1.0, allow_inf_nan=False)
    schedule: Schedule = "onecycle"
    seed: StrictInt | None = Field(0, ge=0)
    reference_batch_size: StrictInt | None = Field(REFERENCE_BATCH_SIZE, ge=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Every argument the data does not decide is written out, so config.yaml shows the whole
        # model. Checked here rather than in a pydantic validator, so the message keeps its wording.
        defaults = {a.name: a.default for a in spec(self.model).arguments if not a.from_data}
        object.__setattr__(self, "model_args", check_arguments(self.model, {**defaults, **self.model_args}))

    @model_validator(mode="before")
    @classmethod
    def _fill_recipe_defaults(cls, options: Any) -> Any:
        if not isinstance(options, dict):
            return options
        data = options.get("data", "digits")
        model = options.get("model") or (DEFAULT_MODELS.get(data, "mlp") if isinstance(data, str) else "mlp")
        defaults = recipe_defaults(data, model)
        filled = {**{k: v for k, v in defaults.items() if k != "model_args"}, **options, "model": model}
        user_args = options.get("model_args")
        if user_args is None or isinstance(user_args, dict):
            filled["model_args"] = {**defaults.get("model_args", {}), **(user_args or {})}
        return filled

    @classmethod
    def from_options(cls, options: dict[str, Any], option_names: dict[str, str] | None = None) -> RunConfig:
        """Validate ``options``; errors name each option as the user wrote it (e.g. ``--epochs``)."""
        try:
            return cls(**options)
        except ConfigError as error:
            if not error.problems:
                raise
            raise config_error(error.problems, cls, option_names) from None


def build_data(config: RunConfig):
    """Load and split the run's data; return the splits (images for models without a tabular input)."""
    from trainwell.data import BUNDLED, load_bundled

    if config.data not in BUNDLED:
        raise ConfigError(
            f"data={config.data!r} is not a known dataset: expected one of {', '.join(map(repr, BUNDLED))}."
        )
    as_images = config.data in IMAGE_DATA and "tabular" not in spec(config.model).inputs
    return load_bundled(config.data, val_fraction=config.val_fraction, seed=config.seed or 0, as_images=as_images)


def data_kind(info: Any) -> str:
    """``tokens``, ``images``, ``series`` or ``tabular``, from what the data loader learned."""
    if info.vocab_size is not None:
        return "tokens"
    return {3: "images", 2: "series"}.get(len(info.input_shape), "tabular")


def sizes_from_data(model: str, info: Any, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model arguments that the data decides: input, output and vocabulary sizes."""
    import math

    model_args = model_args or {}
    kind = data_kind(info)
    if model == "mlp":
        return {"input_size": math.prod(info.input_shape), "output_size": info.num_outputs}
    if model == "cnn":
        return {"in_channels": info.input_shape[0], "num_classes": info.num_outputs}
    sizes: dict[str, Any] = {"output_size": info.num_outputs}
    if kind == "tokens":
        sizes["vocab_size"] = info.vocab_size
        if model != "transformer" and "input_size" not in model_args:
            sizes["input_size"] = TOKEN_EMBEDDING_SIZE
    else:
        sizes["input_size"] = info.input_shape[0] if kind == "images" else info.input_shape[-1]
    return sizes


def build_model(config: RunConfig, info: Any):
    """Build the run's model with input and output sizes taken from the data.

    Raises:
        ConfigError: the model does not take this kind of data, or a model argument sets a size
            that the data decides.
    """
    from trainwell.models import build

    model = spec(config.model)
    kind = data_kind(info)
    if kind not in model.inputs:
        suited = [name for name, other in MODELS.items() if kind in other.inputs]
        raise ConfigError(
            f"model={config.model!r} takes {' or '.join(model.inputs)} data, but data={config.data!r} is {kind} "
            f"(input shape {tuple(info.input_shape)}): use --model {' or '.join(suited)}."
        )
    sizes = sizes_from_data(config.model, info, config.model_args)
    clashes = sorted(set(sizes) & set(config.model_args))
    if clashes:
        shown = ", ".join(f"{key}={config.model_args[key]!r}" for key in clashes)
        raise ConfigError(
            f"model argument {shown} is decided by the data ({', '.join(f'{k}={sizes[k]!r}' for k in clashes)}): "
            "remove it from model_args (--model-arg)."
        )
    pad_id = info.preprocessing.get("pad_id", 0)
    if kind == "tokens" and config.model_args.get("padding_idx", 0) != pad_id:
        raise ConfigError(
            f"model argument padding_idx={config.model_args['padding_idx']!r} differs from the id data={config.data!r} "
            f"pads with ({pad_id}): set --model-arg padding_idx={pad_id}."
        )
    if config.model == "transformer" and kind == "images" and config.model_args.get("patch_size") is None:
        raise ConfigError(
            f"model='transformer' reads images {tuple(info.input_shape)} as patches: set their size, e.g. --model-arg patch_size=2."
        )
    return build(config.model, **sizes, **config.model_args)


def run(config: RunConfig, callbacks: list[Any] | None = None):
    """Train the model ``config`` describes on its data; return the FitResult."""
    from trainwell.system import seed_everything
    from trainwell.trainer import Trainer

    if config.seed is not None:
        # Seed before building the model, so its initial weights are reproducible too.
        seed_everything(config.seed)
    splits = build_data(config)
    train_loader, val_loader = splits.loaders(config.batch_size, seed=config.seed or 0)
    model = build_model(config, splits.info)
    # A RunConfig is a TrainConfig: the Trainer reads the training fields and records them all.
    return Trainer(config, callbacks=callbacks or []).fit(model, train_loader, val_loader)


def default_run_dir(root: Path = Path("runs")) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>``, with a suffix if that directory already exists."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = root / stamp
    suffix = 1
    while candidate.exists():
        candidate = root / f"{stamp}-{suffix}"
        suffix += 1
    return candidate
