"""Recipes: a run's whole configuration (data, model, training) turned into a trained model.

``RunConfig`` is what ``trainwell train`` and its YAML files describe: every
:class:`~trainwell.config.TrainConfig` field plus the data and the model to build. It is
written to the run directory's ``config.yaml`` and can be re-run as is with
``trainwell train --config runs/<name>/config.yaml --out runs/<new-name>``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

from trainwell.config import Schedule, TrainConfig
from trainwell.exceptions import ConfigError, DivergenceError
from trainwell.models.registry import MODELS, check_arguments, spec
from trainwell.option_errors import config_error

# The defaults the built-in recipe was tuned with (see README, "What is measured"): one-cycle
# at a peak lr of 1e-2 beat a constant 1e-3 and 3e-3 on digits over 6 seeds, for batches of 64.
REFERENCE_BATCH_SIZE = 64
RECIPE_LR = 1e-2

ModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]

# Per dataset and model: the options that differ from RunConfig's defaults, each chosen by
# measurement over several seeds (benchmarks/models.py, results.py; README, "What is measured"). Options the
# user sets always win; a model_args entry fills only the arguments the user left out.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "mlp"): {"model_args": {"hidden": [256, 128], "dropout": 0.2}},
    # 8x8 digits do better with two blocks of two convolutions, global average pooling and dropout
    # 0.3 (0.992 mean accuracy over 5 seeds, in half the time): the default CNN's third block, made
    # for 28x28 and larger images, reached 0.988 (benchmarks/cnn_design.py; README, "What is measured").
    ("digits", "cnn"): {"model_args": {"channels": [32, 64], "pooled_size": 1, "dropout": 0.3}},
    # 2x2 patches: 16 tokens of an 8x8 digit (0.918 mean accuracy over 3 seeds, untuned beyond that).
    ("digits", "transformer"): {"model_args": {"patch_size": 2}},
    # The small tabular sets: batches of 64 leave iris 2 steps per epoch (0.847 mean accuracy over
    # 5 seeds at 30 epochs); batches of 16 reach 0.987.
    ("iris", "mlp"): {"batch_size": 16, "epochs": 30},
    ("wine", "mlp"): {"batch_size": 16, "epochs": 30},
    # 256-128 units overfit 455 samples (0.977 against logistic regression's 0.981, 5 seeds); one
    # layer of 64 reached 0.984 against 0.982 (10 seeds).
    ("breast_cancer", "mlp"): {"batch_size": 16, "epochs": 30, "model_args": {"hidden": [64], "dropout": 0.3}},
    # The small-table recipe of breast_cancer, unchanged: val_mae 43.1 against Ridge's 44.2 over seeds
    # 0-4 (the default recipe: 44.5), 41.8 against 42.3 over seeds 5-9 (README, "What is measured").
    ("diabetes", "mlp"): {"batch_size": 16, "epochs": 30, "model_args": {"hidden": [64], "dropout": 0.3}},
    # 231 windows: batches of 16 and up to 50 epochs (early stopping ends most runs near 20)
    # against batch 64 and 10 epochs: val_mae 0.409 -> 0.373 (LSTM, 3 seeds), 0.398 -> 0.374
    # (Elman RNN, 5 seeds); the GRU was 0.374 -> 0.361 (3 seeds).
    **{("sunspots", cell): {"batch_size": 16, "epochs": 50} for cell in ("lstm", "gru", "rnn")},
    # At lr 1e-2 the Transformer reached 0.60 accuracy, 0.68 at 3e-3 and 0.67 at 1e-3; without
    # dropout 0.73 (10 epochs underfit rather than overfit).
    ("word_language", "transformer"): {"lr": 3e-3, "model_args": {"dropout": 0.0}},
}
# The model a dataset gets when none is named: the best measured for its kind of data (on
# word_language an LSTM reached 0.80 accuracy, the Transformer 0.73 in 4x the time). Texts (a
# .jsonl file, or data_format "text") are token ids, which only sequence models read: an LSTM too.
DEFAULT_MODELS = {"sunspots": "lstm", "word_language": "lstm"}
TEXT_DEFAULT_MODEL = "lstm"
# Datasets whose samples are images that a model without a tabular input reads as (N, C, H, W).
IMAGE_DATA = ("digits",)
# Embedding width for token ids when an RNN is built from data without input_size set.
TOKEN_EMBEDDING_SIZE = 32
# The sections of a grouped config file (``data:``, ``model:``, ``train:``) and of ``--help``: the
# options that say what to read and what to build; every other option (each TrainConfig field,
# and batch_size) is a ``train:`` option, so a field added to TrainConfig lands there by itself.
DATA_OPTIONS = (
    "data", "data_dir", "data_format", "target", "missing", "image_size", "augment", "bad_images",
    "text_column", "max_length", "download", "val_fraction",
)  # fmt: skip
MODEL_OPTIONS = ("model", "model_args")


def option_group(name: str) -> str:
    """The section of a config file an option belongs in: ``data``, ``model`` or ``train``.

    Example:
        >>> option_group("target"), option_group("model_args"), option_group("epochs")
        ('data', 'model', 'train')
    """
    return "data" if name in DATA_OPTIONS else "model" if name in MODEL_OPTIONS else "train"


def default_model(data: Any, data_format: Any = "auto") -> str:
    """The model ``data`` gets when none is named: the dataset's best measured, an LSTM for texts, else the MLP.

    Example:
        >>> default_model("sunspots"), default_model("reviews.jsonl"), default_model("houses.csv")
        ('lstm', 'lstm', 'mlp')
    """
    from trainwell.data.load import TEXT_SUFFIXES

    if not isinstance(data, (str, Path)):
        return "mlp"
    if str(data) in DEFAULT_MODELS:
        return DEFAULT_MODELS[str(data)]
    if data_format == "text" or (data_format == "auto" and Path(str(data)).suffix.lower() in TEXT_SUFFIXES):
        return TEXT_DEFAULT_MODEL
    return "mlp"


def recipe_defaults(data: str, model: str) -> dict[str, Any]:
    """The options the recipe for ``data`` and ``model`` sets (empty where none was tuned)."""
    return RECIPES.get((data, model), {})


class RunConfig(TrainConfig):
    """A complete run: :class:`TrainConfig` plus the data and the model.

    Args:
        data: What :func:`trainwell.data.load` reads: a bundled dataset (``digits``, the
            default, ``iris``, ``wine``, ``breast_cancer``, ``diabetes``, ``sunspots``, ``word_language``),
            ``mnist`` or ``fashion-mnist``, or the path of a table (``.csv``/``.tsv``/``.parquet``),
            a ``.jsonl`` of texts, a folder of class folders of images, or a folder of MNIST-format
            (IDX) files, recognised by their names.
        data_dir: Directory of the mnist/fashion-mnist IDX files (downloaded into it when absent).
        data_format: ``auto`` (from the name or the path) or ``bundled``, ``idx``, ``tabular``,
            ``images``, ``text``.
        target: The column to predict in a table, or the label column of a text file.
        missing: Missing values in a table: ``impute`` (training median, or a category of their
            own), ``drop`` the rows, or ``error``.
        image_size: Resize images to this square size (None: the first image's size).
        augment: Random crop and flip of training images.
        bad_images: An image that fails to decode is an ``error`` or is ``skip``-ped (counted in the log).
        text_column: The column (key) holding the text of a text file.
        max_length: Tokens kept per text (None: the longest training text, at most 256).
        download: Download missing mnist/fashion-mnist files.
        val_fraction: Share of the data held out for validation (stratified, or the most
            recent part of a time series).
        batch_size: Training batch size; the lr is rescaled by ``lr_scaling`` when it differs
            from ``reference_batch_size``.
        model: A registered model name (``trainwell models`` lists them): ``mlp``, ``cnn``,
            ``lstm``, ``gru``, ``rnn``, ``transformer``. Left out: ``lstm`` for ``sunspots``,
            ``word_language`` and texts (a ``.jsonl`` file or ``data_format="text"``), ``mlp`` for
            the others.
        lr: Peak learning rate, from 1e-6 to 1 (the recipe's default: 1e-2, tuned with one-cycle
            for batches of 64).
        schedule: ``"onecycle"`` (the recipe's default: warm up to ``lr``, then cosine-anneal),
            ``"cosine"`` or ``"constant"``; stepped every batch.
        seed: Seeds the split, the weights and the order (the recipe's default: 0); None leaves
            the RNGs alone.
        reference_batch_size: The batch size ``lr`` was tuned for (the recipe's default: 64);
            the lr is rescaled by ``lr_scaling`` for other batch sizes; None disables the rescaling.
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
    data_dir: Optional[Path] = None
    data_format: Literal["auto", "bundled", "idx", "tabular", "images", "text"] = "auto"
    target: Optional[str] = None
    missing: Literal["impute", "drop", "error"] = "impute"
    image_size: Optional[StrictInt] = Field(None, ge=1, le=4096)
    augment: StrictBool = False
    bad_images: Literal["error", "skip"] = "error"
    text_column: str = "text"
    max_length: Optional[StrictInt] = Field(None, ge=1, le=100_000)
    download: StrictBool = True
    val_fraction: StrictFloat = Field(0.2, gt=0.0, lt=1.0)
    batch_size: StrictInt = Field(REFERENCE_BATCH_SIZE, ge=1, le=1_000_000)
    model: ModelName = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    lr: StrictFloat = Field(RECIPE_LR, ge=1e-6, le=1.0, allow_inf_nan=False)
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
        model = options.get("model") or default_model(data, options.get("data_format", "auto"))
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
    """Load, check and split the run's data (:func:`trainwell.data.load`); return the splits.

    Bundled image data (digits) comes as images for models without a tabular input.
    """
    from trainwell.data import load

    as_images = config.data in IMAGE_DATA and "tabular" not in spec(config.model).inputs
    return load(
        config.data,
        data_dir=config.data_dir,
        val_fraction=config.val_fraction,
        seed=config.seed or 0,
        format=config.data_format,
        target=config.target,
        task=config.task,
        missing=config.missing,
        image_size=config.image_size,
        augment=config.augment,
        bad_images=config.bad_images,
        text_column=config.text_column,
        max_length=config.max_length,
        download=config.download,
        as_images=as_images,
    )


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


def run(config: RunConfig, callbacks: list[Any] | None = None, auto_lr: bool = False, resume: Any = None):
    """Train the model ``config`` describes on its data; return the FitResult.

    Checks that need no data come first (the run directory can take the run, the precision suits
    the device), and the run directory is created only once the data, the model and the first
    batch have passed theirs, so a refused run leaves nothing on disk. The log lines of the data
    loading (rows read, values imputed, the task read from the target) go into ``train.log``.

    With ``auto_lr``, the LR finder picks the peak lr first (on the model about to be trained,
    which it restores), ``reference_batch_size`` becomes the batch size it was found for, and its
    plot is saved as ``lr_find.png`` in the run directory.
    ``resume`` is passed to :meth:`Trainer.fit`: ``"auto"``, a checkpoint or run directory, or None.
    """
    from trainwell.callbacks import SaveDataInfo
    from trainwell.callbacks.lr_finder_plot import SaveLRFinderPlot
    from trainwell.data import check_labels_fit
    from trainwell.loop.trainer import Trainer
    from trainwell.observe.logs import captured
    from trainwell.system import resolve_device, seed_everything

    check_before_loading(config, resume)
    # The log from here on goes into train.log once the run directory exists.
    with captured() if config.run_dir is not None else contextlib.nullcontext():
        if config.seed is not None:
            # Seed before building the model, so its initial weights are reproducible too.
            seed_everything(config.seed)
        splits = build_data(config)
        device = resolve_device(config.device)
        train_loader, val_loader = splits.loaders(config.batch_size, seed=config.seed or 0, pin_memory=device.type == "cuda")
        model = build_model(config, splits.info)
        outputs = _output_width(model, splits.train[0][:2])
        if outputs is not None:
            check_labels_fit(splits, outputs)
        callbacks = [SaveDataInfo(splits.info), *(callbacks or [])]
        if auto_lr:
            config, finder = _with_found_lr(config, model, train_loader)
            callbacks.append(SaveLRFinderPlot(finder))
        # A RunConfig is a TrainConfig: the Trainer reads the training fields and records them all.
        return Trainer(config, callbacks=callbacks).fit(model, train_loader, val_loader, resume=resume)


def check_before_loading(config: RunConfig, resume: Any = None) -> None:
    """The checks that need no data: the run directory can take this run; the precision suits the device.

    Raises:
        ConfigError: the run directory already holds another run (or is a file); the precision
            cannot run on the device.
    """
    from trainwell.files.rundir import check_run_dir
    from trainwell.loop.precision import Precision
    from trainwell.reliability.resume import continues_in
    from trainwell.system import is_primary_process, resolve_device

    if config.run_dir is not None and is_primary_process():
        check_run_dir(Path(config.run_dir), resuming=continues_in(resume, Path(config.run_dir)))
    Precision(config.precision, resolve_device(config.device))


def _output_width(model: Any, sample: Any) -> int | None:
    """How many outputs the model gives per sample (one forward pass on two samples, in eval mode).

    None when the model fails on the sample: the trainer's first-batch check then explains why.
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(sample)
    except (RuntimeError, TypeError, ValueError):
        return None
    finally:
        model.train(was_training)
    if not isinstance(outputs, torch.Tensor):
        return None
    return int(outputs.shape[-1]) if outputs.dim() > 1 else 1


def find_recipe_lr(config: RunConfig, **finder_options: Any):
    """Run the LR finder on the model and data ``config`` describes; return its LRFinderResult."""
    from trainwell.loop.lr_finder import find_lr
    from trainwell.system import seed_everything

    if config.seed is not None:
        seed_everything(config.seed)
    splits = build_data(config)
    train_loader, _ = splits.loaders(config.batch_size, seed=config.seed or 0)
    model = build_model(config, splits.info)
    return find_lr(model, train_loader, config=config, **finder_options)


def _with_found_lr(config: RunConfig, model: Any, train_loader: Any) -> tuple[RunConfig, Any]:
    from trainwell.loop.lr_finder import find_lr

    result = find_lr(model, train_loader, config=config)
    if result.suggested_lr is None:
        raise DivergenceError(
            "lr=auto: the LR finder saw the training loss fall at no lr from 1e-7 to 10, so it cannot suggest one. "
            "Check the data and the model (trainwell lr-find plots the sweep), or pass --lr explicitly."
        )
    logging.getLogger("trainwell").info(
        "lr=auto: using the LR finder's suggestion %.3g as the peak lr, tuned for batch size %d.", result.suggested_lr, config.batch_size
    )
    return config.replace(lr=result.suggested_lr, reference_batch_size=config.batch_size), result


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
