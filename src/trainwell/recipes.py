"""Recipes: a run's whole configuration (data, model, training) turned into a trained model.

``RunConfig`` is what ``trainwell train`` and its YAML files describe: every
:class:`~trainwell.config.TrainConfig` field plus the data and the model to build. It is
written to the run directory's ``config.yaml`` and can be re-run as is with
``trainwell train --config runs/<name>/config.yaml --out runs/<new-name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, StrictBool, StrictInt

from trainwell.config import Schedule, TrainConfig, config_error
from trainwell.exceptions import ConfigError, DivergenceError

# The defaults the built-in recipe was tuned with (see README, "What is measured"): one-cycle
# at a peak lr of 1e-2 beat a constant 1e-3 and 3e-3 on digits over 6 seeds, for batches of 64.
REFERENCE_BATCH_SIZE = 64
RECIPE_LR = 1e-2
DEFAULT_HIDDEN = (256, 128)


class RunConfig(TrainConfig):
    """A complete run: :class:`TrainConfig` plus the data and the model.

    Args:
        data: What :func:`trainwell.data.load` reads: a bundled dataset (``digits``, the
            default, ``iris``, ``wine``, ``breast_cancer``), ``mnist`` or ``fashion-mnist``, or the
            path of a table (``.csv``/``.tsv``/``.parquet``), a ``.jsonl`` of texts or a folder
            of class folders of images.
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
        val_fraction: Share of the data held out for validation (stratified).
        batch_size: Training batch size; the lr is rescaled by ``lr_scaling`` when it differs
            from ``reference_batch_size``.
        model: ``mlp``.
        hidden: Hidden layer widths of the MLP; input and output widths come from the data.
        dropout: Dropout after each hidden layer.

    Its training defaults differ from :class:`TrainConfig`'s where the recipe was tuned:
    one-cycle peaking at lr 1e-2, seed 0, reference batch size 64.
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
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: StrictInt = Field(REFERENCE_BATCH_SIZE, ge=1, le=1_000_000)
    model: str = "mlp"
    hidden: list[StrictInt] = Field(default_factory=lambda: list(DEFAULT_HIDDEN))
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    lr: float = Field(RECIPE_LR, ge=1e-6, le=1.0, allow_inf_nan=False)
    schedule: Schedule = "onecycle"
    seed: StrictInt | None = Field(0, ge=0)
    reference_batch_size: StrictInt | None = Field(REFERENCE_BATCH_SIZE, ge=1)

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
    """Load, check and split the run's data (:func:`trainwell.data.load`); return the splits."""
    from trainwell.data import load

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
    )


def build_model(config: RunConfig, info: Any):
    """Build the run's model with input and output sizes taken from the data."""
    import math

    from trainwell.models import MLP

    if config.model != "mlp":
        raise ConfigError(f"model={config.model!r} is not a known model: expected 'mlp'.")
    if getattr(info, "vocab_size", None) is not None:
        raise ConfigError(
            f"model='mlp' cannot read {info.name!r}: its inputs are token ids, which need a model with an "
            "embedding (a sequence model such as an RNN or a Transformer), not an MLP."
        )
    inputs = math.prod(info.input_shape)
    return MLP([inputs, *config.hidden, info.num_outputs], dropout=config.dropout)


def run(config: RunConfig, callbacks: list[Any] | None = None, auto_lr: bool = False):
    """Train the model ``config`` describes on its data; return the FitResult.

    With ``auto_lr``, the LR finder picks the peak lr first (on the model about to be trained,
    which it restores), and ``reference_batch_size`` becomes the batch size it was found for.
    """
    from trainwell.callbacks import SaveDataInfo
    from trainwell.data import check_labels_fit
    from trainwell.system import resolve_device, seed_everything
    from trainwell.trainer import Trainer

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
        config = _with_found_lr(config, model, train_loader)
    # A RunConfig is a TrainConfig: the Trainer reads the training fields and records them all.
    return Trainer(config, callbacks=callbacks).fit(model, train_loader, val_loader)


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
    from trainwell.lr_finder import find_lr
    from trainwell.system import seed_everything

    if config.seed is not None:
        seed_everything(config.seed)
    splits = build_data(config)
    train_loader, _ = splits.loaders(config.batch_size, seed=config.seed or 0)
    model = build_model(config, splits.info)
    return find_lr(model, train_loader, config=config, **finder_options)


def _with_found_lr(config: RunConfig, model: Any, train_loader: Any) -> RunConfig:
    import logging

    from trainwell.lr_finder import find_lr

    result = find_lr(model, train_loader, config=config)
    if result.suggested_lr is None:
        raise DivergenceError(
            "lr=auto: the LR finder saw the training loss fall at no lr from 1e-7 to 10, so it cannot suggest one. "
            "Check the data and the model (trainwell lr-find plots the sweep), or pass --lr explicitly."
        )
    logging.getLogger("trainwell").info(
        "lr=auto: using the LR finder's suggestion %.3g as the peak lr, tuned for batch size %d.", result.suggested_lr, config.batch_size
    )
    return config.replace(lr=result.suggested_lr, reference_batch_size=config.batch_size)


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
