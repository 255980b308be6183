"""``data.json``: what was learned from the data, saved with a run so prediction can reuse it.

A run directory's ``data.json`` holds the :class:`~trainwell.data.DataInfo` of its training data:
the task, input shape, class names, the training split's normalisation statistics and every
other preprocessing value (vocabulary, categorical encodings, image size) as plain JSON.

Read back, every value is checked before anything is built from it (:class:`DataInfoFile`):
types (``"num_classes": "ten"`` is refused), ranges (an input size of 10^8 would have the model
allocate tens of gigabytes), consistency (as many class names as classes) and finiteness (a NaN
mean would turn every prediction into NaN). A damaged or crafted file fails with one line that
names it and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainwell.exceptions import DataError
from trainwell.files.reading import read_json
from trainwell.files.rundir import RunPaths

DATA_INFO_FILE = RunPaths(Path()).data_info.name
# Version 2 added target_scaling (standardised regression targets); version 1 files read as unscaled.
FORMAT_VERSION = 2
# The largest sample trainwell's loaders make (3 x 4096 x 4096 images, rounded up); a file asking
# for more is damaged or crafted.
MAX_INPUT_VALUES = 1 << 26
MAX_CLASSES = 1_000_000
MAX_VOCABULARY = 10_000_000


class DataInfoFile(BaseModel):
    """The schema of ``data.json``: the types, ranges and consistency every value must have.

    Example:
        >>> DataInfoFile(name="iris", task="classification", input_shape=[4], num_classes=3).input_shape
        [4]
    """

    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)

    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    name: str
    task: Literal["classification", "regression"]
    input_shape: list[int] = Field(min_length=1, max_length=4)
    num_classes: Optional[int] = Field(None, ge=1, le=MAX_CLASSES)
    class_names: list[str] = Field(default_factory=list, max_length=MAX_CLASSES)
    normalization: dict[str, list[float]] = Field(default_factory=dict)
    vocab_size: Optional[int] = Field(None, ge=1, le=MAX_VOCABULARY)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    target_scaling: Optional[dict[str, list[float]]] = None

    @model_validator(mode="after")
    def _consistent(self) -> DataInfoFile:
        if any(size < 1 for size in self.input_shape) or math.prod(self.input_shape) > MAX_INPUT_VALUES:
            raise ValueError(
                f"input_shape {self.input_shape} is out of range: expected sizes ≥ 1 with at most "
                f"{MAX_INPUT_VALUES:,} values per sample"
            )
        if self.task == "classification" and self.num_classes is None:
            raise ValueError("num_classes is missing: a classification run has a number of classes")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if any(value <= 0 for value in self.normalization.get("std", [])):
            raise ValueError("normalization std holds a value ≤ 0: inputs would be divided by it")
        scaling = self.target_scaling or {}
        if any(value <= 0 for value in scaling.get("std", [])):
            raise ValueError("target_scaling std holds a value ≤ 0: predictions would be multiplied by it")
        where = (
            _first_non_finite(self.normalization, "normalization")
            or _first_non_finite(self.preprocessing, "preprocessing")
            or _first_non_finite(scaling, "target_scaling")
        )
        if where is not None:
            raise ValueError(f"{where} is not a finite number: predictions made with it would all be NaN")
        vocabulary = self.preprocessing.get("vocabulary") or self.preprocessing.get("alphabet")
        if self.vocab_size is not None and isinstance(vocabulary, (list, str)) and self.vocab_size > len(vocabulary) + 2:
            raise ValueError(f"vocab_size={self.vocab_size} exceeds the {len(vocabulary)} entries of the vocabulary")
        return self


def _first_non_finite(value: Any, where: str) -> str | None:
    """The key path of the first NaN or infinite number in nested plain data, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def data_info_to_dict(info: Any) -> dict[str, Any]:
    """``info`` as plain JSON-ready data (tuples become lists), with a format version."""
    plain = dataclasses.asdict(info)
    plain["input_shape"] = list(plain["input_shape"])
    return {"format_version": FORMAT_VERSION, **plain}


def data_info_from_dict(plain: dict[str, Any], source: str = "data info") -> Any:
    """The :class:`~trainwell.data.DataInfo` that :func:`data_info_to_dict` described.

    Raises:
        DataError: a field is missing, unknown, of the wrong type, out of range, inconsistent or not
            finite (:class:`DataInfoFile`), or the format version is newer than this trainwell.
    """
    from trainwell.data.bundled import DataInfo

    plain = dict(plain)
    version = plain.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise DataError(
            f"{source} has format_version={version!r}: this trainwell reads versions up to {FORMAT_VERSION}. "
            "Upgrade trainwell to read it."
        )
    known = {f.name for f in dataclasses.fields(DataInfo)}
    unknown = sorted(set(plain) - known - {"format_version"})
    if unknown:
        raise DataError(f"{source} has unknown fields {unknown}: expected only {sorted(known)}.")
    try:
        checked = DataInfoFile.model_validate(plain)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "missing":
            what = f"is incomplete: {field} is missing"
        else:
            value = f" ({problem['input']!r:.60})" if field and not isinstance(problem["input"], dict) else ""
            what = f"is damaged: {field + ': ' if field else ''}{problem['msg'].removeprefix('Value error, ')}{value}"
        raise DataError(f"{source} {what}. Rerun the training to write it again (or restore the file).") from None
    info = DataInfo(**checked.model_dump(exclude={"format_version"}))
    info.input_shape = tuple(info.input_shape)
    return info


def save_data_info(info: Any, directory: str | Path) -> Path:
    """Write ``info`` to ``directory/data.json`` atomically; return the file's path.

    Example:
        >>> import tempfile
        >>> from trainwell.data import load
        >>> with tempfile.TemporaryDirectory() as run_dir:
        ...     path = save_data_info(load("iris").info, run_dir)
        ...     load_data_info(path).class_names
        ['setosa', 'versicolor', 'virginica']
    """
    from trainwell.files.atomic import write_text

    directory = Path(directory)
    path = RunPaths(directory).data_info
    write_text(path, json.dumps(data_info_to_dict(info), indent=1) + "\n")
    return path


def load_data_info(path: str | Path) -> Any:
    """Read a ``data.json`` (or the one inside a run directory).

    Raises:
        DataError: the file is missing, unreadable, not UTF-8, not JSON, or not a valid data info
            (see :func:`data_info_from_dict`).
    """
    path = Path(path)
    if path.is_dir():
        path = RunPaths(path).data_info
    if not path.is_file():
        raise DataError(f"'{path}' does not exist: expected a {DATA_INFO_FILE} written with a run (or its run directory).")
    plain = read_json(path, DataError, "data info")
    if not isinstance(plain, dict):
        raise DataError(f"'{path}' holds a {type(plain).__name__}: expected a JSON object of data info.")
    return data_info_from_dict(plain, source=f"'{path}'")
