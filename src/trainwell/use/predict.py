"""Predictions of a trained model: classes with probabilities, or values, written as CSV or JSONL.

:func:`predict_tensor` runs the model over prepared inputs in batches (eval mode, no gradients);
:class:`Predictions` turns its outputs into what a user reads: for classification the predicted
class name and the probability of every class (softmax over the logits; a single logit is a
sigmoid), for regression the predicted values. :func:`write_predictions` writes them atomically,
so a file under its final name is always complete.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from torch import nn

OUTPUT_FORMATS = ("csv", "jsonl")


@dataclass
class Predictions:
    """A model's predictions for a batch of samples.

    Attributes:
        outputs: The outputs ``(N, ...)`` on the CPU: logits, or values in the targets' own units
            (standardised regression targets are turned back with the run's ``target_scaling``).
        task: ``"classification"`` or ``"regression"`` (the run's task).
        ids: One name per sample (a row number, a file, a line).
        class_names: The classes, index = label (classification).

    Example:
        >>> import torch
        >>> predictions = Predictions(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "classification", ["a", "b"], ["cat", "dog"])
        >>> predictions.classes, [round(p, 3) for p in predictions.probabilities[0].tolist()]
        (['cat', 'dog'], [0.881, 0.119])
    """

    outputs: torch.Tensor
    task: str
    ids: list[str]
    class_names: list[str] = field(default_factory=list)

    @property
    def probabilities(self) -> torch.Tensor:
        """``(N, classes)`` class probabilities (classification only)."""
        import torch

        self._require_classification("probabilities")
        logits = self.outputs.float()
        if logits.dim() == 1 or logits.shape[-1] == 1:
            positive = torch.sigmoid(logits.reshape(-1))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(logits, dim=-1)

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` predicted class indices (classification only)."""
        return self.probabilities.argmax(dim=-1)

    @property
    def classes(self) -> list[str]:
        """The predicted class names (classification only)."""
        names = self._names(self.probabilities.shape[-1])
        return [names[label] for label in self.labels.tolist()]

    @property
    def values(self) -> torch.Tensor:
        """The predicted values ``(N, outputs)`` (regression)."""
        return self.outputs.float().reshape(len(self.outputs), -1)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per sample: ``id``, ``prediction`` and ``probabilities`` (or the value(s))."""
        if self.task != "classification":
            values = self.values.tolist()
            return [
                {"id": sample, "prediction": value[0] if len(value) == 1 else value}
                for sample, value in zip(self.ids, values)
            ]
        probabilities = self.probabilities
        names = self._names(probabilities.shape[-1])
        return [
            {"id": sample, "prediction": predicted, "probabilities": dict(zip(names, row))}
            for sample, predicted, row in zip(self.ids, self.classes, probabilities.tolist())
        ]

    def _names(self, count: int) -> list[str]:
        return list(self.class_names) if len(self.class_names) == count else [str(i) for i in range(count)]

    def _require_classification(self, what: str) -> None:
        if self.task != "classification":
            raise DataError(f"{what} exist for classification only: this model does {self.task}; read .values instead.")


def predict_tensor(
    model: nn.Module,
    inputs: torch.Tensor,
    info: Any,
    ids: Sequence[str] | None = None,
    batch_size: int = 256,
    device: Any = None,
) -> Predictions:
    """Run ``model`` on prepared ``inputs`` in batches and wrap the outputs as :class:`Predictions`.

    Raises:
        DataError: the model fails on the inputs (their shape does not fit it).
    """
    import torch

    from trainwell.data import batches
    from trainwell.data.targets import target_scaling_of
    from trainwell.display import progress

    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: expected an integer ≥ 1.")
    was_training = model.training
    model.eval()
    outputs = []
    starts = range(0, len(inputs), batch_size)
    # A bar only for a pass that lasts (delay): a large input shows progress, a small one nothing.
    shown = progress(starts, total=len(starts), desc="predicting", unit="batch", leave=False, delay=1.0)
    try:
        with torch.no_grad():
            for start in shown:
                chunk = inputs[start : start + batch_size].to(device)
                try:
                    outputs.append(batches.forward(model, chunk).float().cpu())
                except (RuntimeError, TypeError, ValueError) as error:
                    raise DataError(
                        f"the model failed on inputs of shape {tuple(chunk.shape)}: {error}. Prepare the inputs as in "
                        "training (LoadedModel.predict does it for files and raw values)."
                    ) from error
    finally:
        shown.close()
        model.train(was_training)
    joined = torch.cat(outputs) if outputs else torch.empty(0)
    task = info.task if info is not None else "regression"
    scaling = target_scaling_of(info) if info is not None and task == "regression" else None
    if scaling is not None and len(joined):
        joined = scaling.unscale(joined)
    names = list(info.class_names) if info is not None else []
    return Predictions(joined, task, list(ids) if ids is not None else [str(i) for i in range(len(joined))], names)


def write_predictions(
    predictions: Predictions, path: str | Path | None = None, format: str | None = None
) -> str | Path:
    """Write ``predictions`` as CSV or JSONL; return the path written, or the text when ``path`` is None.

    CSV columns: ``id``, ``prediction``, then ``p_<class>`` per class (classification) or, for
    several regression outputs, ``prediction_0``, ``prediction_1``, ... JSONL: one object per
    sample, ``{"id", "prediction", "probabilities": {class: p}}``.

    Args:
        predictions: What :meth:`LoadedModel.predict` returned.
        path: The file to write (its suffix picks the format: ``.csv`` or ``.jsonl``); None
            returns the text instead.
        format: ``"csv"`` or ``"jsonl"``, overriding the suffix.

    Raises:
        ConfigError: an unknown format, or a suffix that names none.
    """
    from trainwell.files.atomic import write_text

    chosen = format or (output_format(Path(path)) if path is not None else "csv")
    if chosen not in OUTPUT_FORMATS:
        raise ConfigError(
            f"format={chosen!r} is not a valid choice: expected one of {', '.join(map(repr, OUTPUT_FORMATS))}."
        )
    rows = predictions.rows()
    if chosen == "jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        text = _csv(rows)
    if path is None:
        return text
    path = Path(path)
    write_text(path, text)
    return path


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not rows:
        writer.writerow(["id", "prediction"])
        return buffer.getvalue()
    first = rows[0]
    if "probabilities" in first:
        classes = list(first["probabilities"])
        writer.writerow(["id", "prediction", *(f"p_{name}" for name in classes)])
        for row in rows:
            writer.writerow([row["id"], row["prediction"], *(f"{row['probabilities'][name]:.6g}" for name in classes)])
    elif isinstance(first["prediction"], list):
        writer.writerow(["id", *(f"prediction_{i}" for i in range(len(first["prediction"])))])
        for row in rows:
            writer.writerow([row["id"], *(f"{value:.8g}" for value in row["prediction"])])
    else:
        writer.writerow(["id", "prediction"])
        for row in rows:
            writer.writerow([row["id"], f"{row['prediction']:.8g}"])
    return buffer.getvalue()


def output_format(path: Path) -> str:
    """``csv`` or ``jsonl`` from a file's suffix (``.json``/``.ndjson`` count as JSONL).

    Raises:
        ConfigError: the suffix names neither.
    """
    suffix = path.suffix.lower().lstrip(".")
    if suffix in OUTPUT_FORMATS:
        return suffix
    if suffix in ("json", "ndjson"):
        return "jsonl"
    raise ConfigError(
        f"output '{path}' has the suffix {path.suffix or '(none)'!r}, which names no format: end it in .csv or .jsonl "
        "(or pass --format csv|jsonl)."
    )
