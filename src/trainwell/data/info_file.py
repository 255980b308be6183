"""``data.json``: what was learned from the data, saved with a run so prediction can reuse it.

A run directory's ``data.json`` holds the :class:`~trainwell.data.DataInfo` of its training data:
the task, input shape, class names, the training split's normalisation statistics and every
other preprocessing value (vocabulary, categorical encodings, image size) as plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trainwell.exceptions import DataError
from trainwell.files.rundir import RunPaths

DATA_INFO_FILE = RunPaths(Path()).data_info.name
# Version 2 added target_scaling (standardised regression targets); version 1 files read as unscaled.
FORMAT_VERSION = 2


def data_info_to_dict(info: Any) -> dict[str, Any]:
    """``info`` as plain JSON-ready data (tuples become lists), with a format version."""
    plain = dataclasses.asdict(info)
    plain["input_shape"] = list(plain["input_shape"])
    return {"format_version": FORMAT_VERSION, **plain}


def data_info_from_dict(plain: dict[str, Any], source: str = "data info") -> Any:
    """The :class:`~trainwell.data.DataInfo` that :func:`data_info_to_dict` described.

    Raises:
        DataError: a field is missing or unknown, or the format version is newer than this trainwell.
    """
    from trainwell.data.bundled import DataInfo

    plain = dict(plain)
    version = plain.pop("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(
            f"{source} has format_version={version!r}: this trainwell reads versions up to {FORMAT_VERSION}. "
            "Upgrade trainwell to read it."
        )
    known = {f.name for f in dataclasses.fields(DataInfo)}
    unknown = sorted(set(plain) - known)
    if unknown:
        raise DataError(f"{source} has unknown fields {unknown}: expected only {sorted(known)}.")
    try:
        info = DataInfo(**plain)
    except TypeError as error:
        raise DataError(f"{source} is incomplete: {error}.") from None
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
    directory.mkdir(parents=True, exist_ok=True)
    path = RunPaths(directory).data_info
    write_text(path, json.dumps(data_info_to_dict(info), indent=1) + "\n")
    return path


def load_data_info(path: str | Path) -> Any:
    """Read a ``data.json`` (or the one inside a run directory).

    Raises:
        DataError: the file is missing, not JSON, or not a data info.
    """
    path = Path(path)
    if path.is_dir():
        path = RunPaths(path).data_info
    if not path.is_file():
        raise DataError(f"'{path}' does not exist: expected a {DATA_INFO_FILE} written with a run (or its run directory).")
    try:
        plain = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"'{path}' is not valid JSON ({error}): it is damaged; rerun the training to rewrite it.") from None
    if not isinstance(plain, dict):
        raise DataError(f"'{path}' holds a {type(plain).__name__}: expected a JSON object of data info.")
    return data_info_from_dict(plain, source=f"'{path}'")
