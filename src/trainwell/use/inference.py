"""A trained run, ready for inference: the model with its best weights and the run's preprocessing.

:func:`load_model` rebuilds the model a run directory describes (``config.yaml``: the model and
its arguments; ``data.json``: the sizes and the preprocessing learned from the training data),
loads the weights of its best checkpoint (``checkpoints/best.pt``: the best by the run's monitor,
the lowest val_loss by default, the weights the run ended with) and
returns a :class:`LoadedModel` whose :meth:`~LoadedModel.predict` takes new data in the run's
format and prepares it exactly as training did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import CheckpointError, ConfigError, DataError
from trainwell.files.rundir import RunPaths
from trainwell.files.sharded import is_sharded_checkpoint

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainwell.use.evaluation import Evaluation
    from trainwell.use.predict import Predictions

logger = logging.getLogger("trainwell")


@dataclass
class LoadedModel:
    """A trained model with what it needs to run on new data.

    Attributes:
        model: The ``nn.Module``, in eval mode, on ``device``, with the checkpoint's weights.
        info: The run's :class:`~trainwell.data.DataInfo`: task, class names, input shape, preprocessing.
        config: The run's :class:`~trainwell.recipes.RunConfig` (None for a run trained on your own model).
        checkpoint: The checkpoint file the weights come from.
        run_dir: The run directory.
        device: Where the model runs.
    """

    model: nn.Module
    info: Any
    config: Any
    checkpoint: Path
    run_dir: Path
    device: torch.device

    def prepare(self, values: Any) -> torch.Tensor:
        """Raw values in the run's format (or prepared tensors, checked) -> the model's inputs.

        See :func:`trainwell.use.preprocess.prepare` for what each kind of run accepts.
        """
        from trainwell.use.preprocess import prepare

        if self.info is None:
            import torch

            if isinstance(values, torch.Tensor):
                return values
            raise DataError(
                f"'{self.run_dir}' has no data.json, so its preprocessing is unknown: give prepared tensors, not "
                f"{type(values).__name__}."
            )
        return prepare(values, self.info)

    def predict(self, values: Any, batch_size: int = 256) -> Predictions:
        """Predict for ``values``: a file or folder path in the run's format, raw values, or a tensor.

        Args:
            values: A ``str``/``Path`` is read with :func:`trainwell.use.preprocess.read_inputs`
                (a CSV, an image or a folder of images, an IDX file, texts); anything else goes
                through :meth:`prepare`.
            batch_size: Samples per forward pass.

        Returns:
            :class:`~trainwell.use.predict.Predictions`: classes and probabilities, or values.

        Raises:
            DataError: the input does not match what the model was trained on.
        """
        from trainwell.use.predict import predict_tensor
        from trainwell.use.preprocess import read_inputs

        if isinstance(values, (str, Path)) and self.info is not None:
            prepared = read_inputs(values, self.info)
            inputs, ids = prepared.inputs, prepared.ids
        else:
            inputs = self.prepare(values)
            ids = [str(row) for row in range(len(inputs))]
        return predict_tensor(self.model, inputs, self.info, ids=ids, batch_size=batch_size, device=self.device)

    def evaluate(self, data: str | Path, batch_size: int = 256) -> Evaluation:
        """Evaluate on a labelled file or folder in the run's format (the labels must be in it).

        Raises:
            DataError: the input has no labels, or does not match the training data.
        """
        from trainwell.use.preprocess import read_inputs

        prepared = read_inputs(data, self.info)
        if prepared.targets is None:
            raise DataError(f"'{data}' holds no labels to evaluate against: {_labels_hint(self.info)}")
        return evaluate_tensors(self, prepared.inputs, prepared.targets, batch_size, source={"data": str(data)})


def load_model(
    run_dir: str | Path,
    checkpoint: str | Path = "best",
    device: str = "auto",
    model: nn.Module | None = None,
) -> LoadedModel:
    """The model of a run directory with its best weights and its preprocessing, ready for inference.

    Args:
        run_dir: A run directory written by ``trainwell train`` (or by ``fit(..., run_dir=...)``,
            then with ``model`` given).
        checkpoint: ``"best"`` (``checkpoints/best.pt``: the best end-of-epoch checkpoint by the
            run's monitor, the lowest val_loss unless ``monitor`` said otherwise: the weights the
            run ended with when it restored its best epoch), ``"last"`` (``checkpoints/last.pt``,
            the newest), or the path of a checkpoint file.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        model: The module to load the weights into, for runs trained with ``trainwell.fit`` on
            your own model (their config names no model to rebuild). None rebuilds it from the run.

    Returns:
        A :class:`LoadedModel`: ``.model`` (eval mode), ``.info``, ``.predict(...)``, ``.evaluate(...)``.

    Raises:
        ConfigError: ``run_dir`` is not a run directory, or its config names no model and none was given.
        DataError: the run has no ``data.json`` (it was trained before data info was saved, or
            without trainwell's data loading).
        CheckpointError: the run has no committed checkpoint, or the chosen one is corrupt.
        CheckpointMismatchError: the checkpoint does not fit the model.

    Example:
        >>> import trainwell
        >>> loaded = trainwell.load_model("runs/digits")  # doctest: +SKIP
        >>> loaded.predict("new_digits.csv").classes[:3]  # doctest: +SKIP
        ['3', '8', '1']
    """
    from trainwell.data import load_data_info
    from trainwell.distributed.shards import read as read_whole
    from trainwell.files.model_state import load_model_state
    from trainwell.system import resolve_device

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"run directory '{run_dir}' does not exist: give a directory written by trainwell train (--out)."
        )
    options = _read_config(run_dir)
    if model is None:
        if "model" not in options:
            raise ConfigError(
                f"'{run_dir}/config.yaml' names no model to rebuild (the run trained your own model with trainwell.fit): "
                "pass it, built as in training, as load_model(run_dir, model=MyModel())."
            )
        info = load_data_info(run_dir)
        config = run_config(options, run_dir)
        from trainwell.recipes import build_model

        model = build_model(config, info)
    else:
        info = load_data_info(run_dir) if RunPaths(run_dir).data_info.is_file() else None
        config = None
    path = find_checkpoint(run_dir, checkpoint)
    saved = read_whole(path, None)  # a sharded checkpoint (strategy="fsdp"): its pieces put together
    state = saved.get("model_state_dict", saved) if isinstance(saved, dict) else saved
    load_model_state(model, state, source=f"checkpoint '{path}'")
    resolved = resolve_device(device)
    model = model.to(resolved).eval()
    logger.info("Loaded %s from %s.", type(model).__name__, path)
    return LoadedModel(model=model, info=info, config=config, checkpoint=path, run_dir=run_dir, device=resolved)


def find_checkpoint(run_dir: Path, which: str | Path = "best") -> Path:
    """The checkpoint file ``which`` names in ``run_dir``: ``"best"``, ``"last"``, or a path.

    ``"best"`` and ``"last"`` are what the run's ``checkpoints/best.pt`` and ``last.pt`` stand for:
    training kept them pointing at the best checkpoint by its monitor and at the newest. The
    checkpoint they copy is returned while it is still there (its name says its epoch and step),
    else the alias itself. For runs written before those names, or where they are not committed,
    the same choice is made again from the manifests.

    Raises:
        CheckpointError: no committed checkpoint, or the path does not exist.
    """
    from trainwell.callbacks.checkpointing import Checkpointing
    from trainwell.files.manifest import checkpoint_directory, committed_checkpoints, read_manifest
    from trainwell.files.rundir import BEST_CHECKPOINT, LAST_CHECKPOINT
    from trainwell.observe.monitor import configured_monitor

    if str(which) not in ("best", "last"):
        path = Path(which)
        if not path.is_file() and not is_sharded_checkpoint(path):
            raise CheckpointError(
                f"checkpoint '{path}' does not exist: give 'best', 'last' or the path of a checkpoint file "
                "(or of a sharded checkpoint's .dcp directory)."
            )
        return path
    directory = checkpoint_directory(run_dir)
    alias = directory / (BEST_CHECKPOINT if str(which) == "best" else LAST_CHECKPOINT)
    try:
        pointer = read_manifest(alias) if alias.is_file() else None
        original = read_manifest(directory / pointer.alias_of) if pointer and pointer.alias_of else None
    except CheckpointError as error:
        logger.warning("Ignoring %s: %s", alias, error)
        pointer = original = None
    if pointer is not None:
        return original.path if original is not None and original.sha256 == pointer.sha256 else alias
    committed = committed_checkpoints(directory)
    if not committed:
        raise CheckpointError(
            f"'{run_dir}' holds no committed checkpoint (was it trained with save_checkpoints=False, or stopped "
            "before its first epoch ended?): train it again, or give the path of a checkpoint file."
        )
    if str(which) == "last":
        return committed[0].path
    # The Checkpointing callback's own choice by the run's own monitor, so "best" is the checkpoint
    # training kept as best (and whose weights it ended with).
    options = _read_config(run_dir) if RunPaths(run_dir).config.is_file() else {}
    # A run without validation monitors train_loss by default; its manifests then hold no val_loss.
    monitor = configured_monitor(options, validated=any(m.val_loss is not None for m in committed))
    return Checkpointing(directory, monitor=monitor).best_path or committed[0].path


def run_config(options: dict[str, Any], run_dir: Path) -> Any:
    """The run's RunConfig from its config.yaml options (extra loggers dropped: inference writes no logs)."""
    from trainwell.recipes import RunConfig

    try:
        return RunConfig(**{**options, "loggers": []})
    except ConfigError as error:
        raise ConfigError(f"'{run_dir}/config.yaml' is not a valid run config: {error}") from None


def held_out_split(loaded: LoadedModel) -> tuple[str, Any, Any]:
    """The run's own held-out data, rebuilt from its config: the test split where the format has one, else validation.

    The data is loaded and split again with the run's seed, and what is learned from it (class
    names, normalisation, preprocessing) must equal the run's ``data.json``, so the split is the
    one training held out, prepared as in training.

    Returns:
        ``(split_name, inputs, targets)``, ``split_name`` being ``"test"`` or ``"val"``.

    Raises:
        ConfigError: the run has no config of its data (trained with ``fit`` on your own loaders).
        DataError: the data cannot be found from here, or changed since training.
    """
    import json

    from trainwell.data.info_file import data_info_to_dict
    from trainwell.recipes import build_data

    if loaded.config is None:
        raise ConfigError(
            f"'{loaded.run_dir}' records no data to rebuild (trained with fit on your own loaders): pass --data."
        )
    try:
        splits = build_data(loaded.config)
    except DataError as error:
        raise DataError(
            f"the run's data {loaded.config.data!r} cannot be loaded from here ({error}); pass --data with held-out data."
        ) from None
    rebuilt = json.loads(json.dumps(data_info_to_dict(splits.info)))
    if rebuilt != data_info_to_dict(loaded.info):
        changed = sorted(key for key in rebuilt if rebuilt.get(key) != data_info_to_dict(loaded.info).get(key))
        raise DataError(
            f"the run's data {loaded.config.data!r} has changed since training: what is learned from it ({', '.join(changed)}) "
            f"differs from '{loaded.run_dir}/data.json', so the split would not be the one training held out. Pass --data."
        )
    if splits.test is not None:
        return "test", *splits.test
    return "val", *splits.val


def evaluate_tensors(
    loaded: LoadedModel, inputs: Any, targets: Any, batch_size: int, source: dict[str, Any]
) -> Evaluation:
    """:func:`~trainwell.use.evaluation.evaluate` of ``loaded`` on prepared tensors, with the run's task, class names and metrics."""
    from trainwell.data import TensorLoader
    from trainwell.data.targets import target_scaling_of
    from trainwell.use.evaluation import evaluate

    info = loaded.info
    scaling = target_scaling_of(info) if info is not None else None
    # Targets come prepared (standardised, for scaled regression); the errors are reported in their own units.
    loader = TensorLoader(inputs, targets, batch_size=batch_size, shuffle=False, target_scaling=scaling)
    task = info.task if info is not None else "auto"
    result = evaluate(
        loaded.model,
        loader,
        task=task,
        class_names=info.class_names if info is not None else None,
        device=loaded.device,
        metrics=getattr(loaded.config, "metrics", None),
    )
    result.source = {"run_dir": str(loaded.run_dir), "checkpoint": loaded.checkpoint.name, **source}
    return result


def _read_config(run_dir: Path) -> dict[str, Any]:
    from trainwell.files.reading import read_yaml

    path = RunPaths(run_dir).config
    if not path.is_file():
        raise ConfigError(
            f"'{run_dir}' has no config.yaml: it is not a run directory written by trainwell train or fit(run_dir=...)."
        )
    options = read_yaml(path, ConfigError, "the run's config") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"'{path}' holds a {type(options).__name__}: expected a mapping of options.")
    return options


def _labels_hint(info: Any) -> str:
    from trainwell.use.preprocess import input_kind

    kind = input_kind(info) if info is not None else "arrays"
    return {
        "tabular": f"a table needs its target column {info.preprocessing.get('target')!r}." if info is not None else "",
        "images": "put the images in class folders (root/<class>/x.png) named like the run's classes.",
        "idx": "give a folder with the IDX images and labels files of a split (t10k-... or train-...).",
        "text": "each record needs its label column.",
        "features": "the table needs a 'target' column.",
        "words": "each record needs a 'label'.",
    }.get(kind, "give labelled data.")
