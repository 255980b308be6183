"""New inputs prepared exactly as in training, from the preprocessing a run saved in ``data.json``.

A run's :class:`~trainwell.data.DataInfo` holds everything training learned from its data: the
normalisation statistics of the training split, the table's columns with their medians and
categories, the image size and channels, the text vocabulary and length. :func:`read_inputs`
reads a file in the run's format and turns it into the tensors the model was trained on, with
nothing learned again; :func:`prepare` does the same for values in memory. What does not match
the training data is refused with a :class:`~trainwell.exceptions.DataError` naming the
difference: a missing column, an IDX image of another size, a tensor of another shape, a file
format the run cannot read.

| the run's data | what it reads |
|---|---|
| a table (``.csv``/``.tsv``/``.parquet``) | a table with the same feature columns (the target column is optional) |
| a folder of class folders of images | one image file, or a folder of images (class sub-folders give labels) |
| MNIST-format IDX files | an IDX images file, or a folder with the IDX files of a split |
| texts (``.jsonl``, or ``.csv`` as text) | ``.jsonl``/``.csv``/``.tsv`` with the text column, or ``.txt`` with one text per line |
| ``digits``, ``iris``, ``wine``, ``breast_cancer`` | a table whose columns are scikit-learn's feature names (digits: ``pixel_0_0`` ...) |
| ``word_language`` | ``.txt`` with one word per line, or a table/JSONL with a ``text`` column |
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.exceptions import DataError
from trainwell.files.reading import read_text
from trainwell.use.prepared import Prepared, encode_targets, row_ids
from trainwell.use.tables import (
    as_columns,
    encode_table,
    features_from_columns,
    read_features,
    read_table_rows,
    require_columns,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("trainwell")

SKLEARN_BUNDLED = ("digits", "iris", "wine", "breast_cancer", "diabetes")
TEXT_RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson")


def input_kind(info: Any) -> str:
    """How a run's data is read: ``tabular``, ``images``, ``idx``, ``text``, ``features`` (scikit-learn
    bundled sets), ``words`` (word_language), ``series`` or ``arrays``."""
    preprocessing = info.preprocessing or {}
    kind = preprocessing.get("format")
    if kind in ("tabular", "images", "idx", "text", "arrays"):
        return kind
    if "alphabet" in preprocessing:
        return "words"
    if "window" in preprocessing:
        return "series"
    if info.name in SKLEARN_BUNDLED:
        return "features"
    return "arrays"


def read_inputs(path: str | Path, info: Any) -> Prepared:
    """Read ``path`` and prepare it as the run's training data was prepared.

    Args:
        path: A file or folder in the run's format (see the module's table).
        info: The run's :class:`~trainwell.data.DataInfo` (``trainwell.data.load_data_info(run_dir)``).

    Returns:
        :class:`Prepared` inputs, ids and (when present in the file) targets.

    Raises:
        DataError: the file is missing or of a format the run cannot read, or its content does not
            match the training data (missing columns, another image size, unknown labels, ...).

    Example:
        >>> from trainwell.data import load_data_info
        >>> prepared = read_inputs("new_houses.csv", load_data_info("runs/houses"))  # doctest: +SKIP
        >>> prepared.inputs.shape  # doctest: +SKIP
        torch.Size([12, 7])
    """
    path = Path(path)
    if info is None:
        raise DataError(
            f"cannot read '{path}': the run has no data.json, so how its inputs were prepared is unknown. Prepare them "
            "as in training and pass tensors."
        )
    if not path.exists():
        raise DataError(f"input '{path}' does not exist: give an existing file or folder.")
    kind = input_kind(info)
    readers = {
        "tabular": read_table_rows,
        "images": _read_images,
        "idx": _read_idx,
        "text": _read_texts,
        "features": read_features,
        "words": _read_words,
    }
    if kind not in readers:
        what = "a time series" if kind == "series" else "arrays in memory"
        raise DataError(
            f"the run was trained on {what} ({info.name!r}), which has no file format to read '{path}' from: "
            "prepare the inputs as in training yourself and call LoadedModel.predict on the tensor."
        )
    return readers[kind](path, info)


def prepare(values: Any, info: Any) -> torch.Tensor:
    """Prepare in-memory values for the model, as in training.

    Args:
        values: A tensor or array already prepared (checked against the training shape and
            dtype); or raw values in the run's format: for a table, a mapping of column -> values
            or a list of row mappings; for texts or words, a list of strings; for images, a list of
            image file paths.
        info: The run's :class:`~trainwell.data.DataInfo`.

    Returns:
        The model's inputs ``(N, ...)``.

    Raises:
        DataError: the values do not match what the model was trained on.
    """
    import torch

    kind = input_kind(info)
    if isinstance(values, (torch.Tensor, np.ndarray)):
        return check_tensor(torch.as_tensor(values), info)
    if kind == "tabular":
        if isinstance(values, dict):
            return encode_table(as_columns(values), info, "the columns given")
        if isinstance(values, (list, tuple)) and all(isinstance(row, dict) for row in values):
            names = list(dict.fromkeys(name for row in values for name in row))
            return encode_table({name: [row.get(name) for row in values] for name in names}, info, "the rows given")
    if kind in ("text", "words") and isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        return _encode_strings(list(values), info)
    if kind == "images" and isinstance(values, (list, tuple)) and all(isinstance(v, (str, Path)) for v in values):
        return torch.stack([_decode_image(Path(v), info) for v in values])
    if kind == "features" and isinstance(values, dict):
        return features_from_columns(as_columns(values), info, "the columns given")
    raise DataError(
        f"cannot prepare a {type(values).__name__} for a model trained on {kind} data ({info.name!r}): "
        f"expected {_accepted(kind)}, or a tensor of shape (N, {', '.join(map(str, info.input_shape))})."
    )


def check_tensor(inputs: torch.Tensor, info: Any) -> torch.Tensor:
    """Refuse prepared inputs whose per-sample shape or kind (token ids or numbers) differs from training's."""
    import torch

    expected = tuple(info.input_shape)
    tokens = info.vocab_size is not None
    if inputs.dim() == len(expected):
        inputs = inputs.unsqueeze(0)
    if tuple(inputs.shape[1:]) != expected:
        raise DataError(
            f"inputs of shape {tuple(inputs.shape)} do not match the training data ({info.name!r}), whose samples "
            f"have shape {expected}: give a tensor of shape (N, {', '.join(map(str, expected))})."
        )
    if tokens and inputs.is_floating_point():
        raise DataError(f"inputs are {inputs.dtype}, but the model reads token ids: give int64 ids (N, {expected[0]}).")
    if not tokens and not inputs.is_floating_point():
        inputs = inputs.to(torch.float32)
    return inputs


def _read_images(path: Path, info: Any) -> Prepared:
    import torch

    from trainwell.data.images import IMAGE_EXTENSIONS

    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"input '{path}' is not an image by its extension: expected one of {', '.join(IMAGE_EXTENSIONS)}, or a folder of them."
            )
        return Prepared(_decode_image(path, info).unsqueeze(0), [path.name])
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(
            f"folder '{path}' holds no image files (expected files ending in {', '.join(IMAGE_EXTENSIONS)})."
        )
    inputs = torch.stack([_decode_image(file, info) for file in files])
    ids = [file.relative_to(path).as_posix() for file in files]
    # Images inside class folders (root/<class>/x.png, as in training) carry their labels.
    folders = [file.relative_to(path).parts for file in files]
    targets = None
    if all(len(parts) == 2 for parts in folders):
        names = {name: index for index, name in enumerate(info.class_names)}
        unknown = sorted({parts[0] for parts in folders} - set(names))
        if not unknown:
            targets = torch.tensor([names[parts[0]] for parts in folders], dtype=torch.int64)
        else:
            logger.info(
                "Folder '%s': sub-folders %s are not classes of the run, so the images carry no labels.", path, unknown
            )
    return Prepared(inputs, ids, targets)


def _decode_image(path: Path, info: Any) -> torch.Tensor:
    """One image as in training: decoded, converted to the run's channels, resized (bilinear), scaled, standardised."""
    import torch

    from trainwell.data.images import decode

    preprocessing = info.preprocessing
    height, width = preprocessing["image_size"]
    try:
        array = decode(path, (height, width), preprocessing["channels"])
    except DataError:
        raise
    except Exception as error:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise DataError(
            f"'{path}' could not be decoded as an image ({type(error).__name__}: {error}): remove or replace it."
        ) from None
    pixels = torch.from_numpy(np.array(array)).permute(2, 0, 1).float() * preprocessing["scale"]
    return _standardize(pixels, info)


def _standardize(pixels: torch.Tensor, info: Any) -> torch.Tensor:
    """Per channel (images) or one value (IDX) with the training split's mean and standard deviation."""
    import torch

    # Float32 statistics and the same operations as in training, so the results are bit-identical.
    mean = torch.tensor(info.normalization["mean"], dtype=torch.float32)
    std = torch.tensor(info.normalization["std"], dtype=torch.float32)
    shape = (-1, 1, 1) if len(mean) > 1 else (1,)
    return (pixels - mean.reshape(shape)) / std.reshape(shape)


# ------------------------------------------------------------------------------- IDX


def _read_idx(path: Path, info: Any) -> Prepared:
    import torch

    from trainwell.data.idx import SPLIT_FILES, find_split_files, read_idx, read_split

    targets = None
    if path.is_dir():
        split = next((name for name in ("test", "train") if find_split_files(path, name) is not None), None)
        if split is None:
            wanted = ", ".join(f"'{stem}[.gz]'" for stems in SPLIT_FILES.values() for stem in stems)
            raise DataError(
                f"folder '{path}' holds no IDX split: expected the files {wanted}, or give one images file."
            )
        images, labels = read_split(path, split, max(len(info.class_names), 256))
        targets = torch.from_numpy(labels)
        unknown = targets >= len(info.class_names)
        if bool(unknown.any()):
            index = int(unknown.nonzero()[0, 0])
            raise DataError(
                f"the {split} labels in '{path}' hold {int(targets[index])} at index {index}: the run has {len(info.class_names)} classes."
            )
        source = f"the {split} images in '{path}'"
    else:
        images = read_idx(path)
        source = f"'{path}'"
    expected = tuple(info.input_shape[1:])
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or tuple(images.shape[1:]) != expected:
        raise DataError(
            f"{source} holds images of shape {tuple(images.shape[1:])}, but the model was trained on {expected[0]}x{expected[1]} "
            f"images: give IDX images (count, {expected[0]}, {expected[1]}); they are not resized."
        )
    if images.dtype != np.uint8:
        raise DataError(f"{source} holds {images.dtype} values: expected uint8 pixels (0-255), as in training.")
    pixels = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float() * info.preprocessing["scale"]
    return Prepared(_standardize(pixels, info), row_ids(len(pixels)), targets)


# ------------------------------------------------------------------------------- texts and words


def _read_texts(path: Path, info: Any) -> Prepared:
    preprocessing = info.preprocessing
    return _read_strings(
        path, info, preprocessing.get("text_column", "text"), preprocessing.get("label_column", "label")
    )


def _read_words(path: Path, info: Any) -> Prepared:
    return _read_strings(path, info, "text", "label")


def _read_strings(path: Path, info: Any, text_column: str, label_column: str) -> Prepared:
    import json

    if path.is_dir():
        raise DataError(
            f"input '{path}' is a folder: the run was trained on texts, so it reads a .jsonl, .csv, .tsv or .txt file."
        )
    suffix = path.suffix.lower()
    labels: list[Any] | None = None
    if suffix == ".txt":
        lines = [
            (number, line.rstrip("\n"))
            for number, line in enumerate(read_text(path, DataError, "input").splitlines(), start=1)
        ]
        records = [(number, {text_column: line}) for number, line in lines if line.strip()]
    elif suffix in TEXT_RECORD_SUFFIXES:
        records = []
        for number, line in enumerate(read_text(path, DataError, "input").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"'{path}' line {number} is not valid JSON ({error}): expected one JSON object per line."
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"'{path}' line {number} holds a {type(record).__name__}: expected an object with a {text_column!r} text."
                )
            records.append((number, record))
    elif suffix in (".csv", ".tsv"):
        from trainwell.data.tabular import read_columns

        columns = read_columns(path)
        require_columns(columns, [text_column], f"'{path}'", label_column)
        records = [
            (row + 2, {name: columns[name][row] for name in columns}) for row in range(len(columns[text_column]))
        ]
    else:
        raise DataError(
            f"input '{path}' has the suffix {suffix or '(none)'!r}: a run trained on texts reads .jsonl, .csv, .tsv, or .txt "
            "(one text per line)."
        )
    if not records:
        raise DataError(f"'{path}' holds no texts: expected one per line.")
    texts = []
    for number, record in records:
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"'{path}' line {number} has no {text_column!r} text: every record needs one (the model was trained on "
                f"column {text_column!r})."
            )
        texts.append(text)
    if all(record.get(label_column) not in (None, "") for _, record in records):
        labels = [record[label_column] for _, record in records]
    targets = encode_targets(labels, info, f"the {label_column!r} labels of '{path}'") if labels is not None else None
    return Prepared(_encode_strings(texts, info), [str(number) for number, _ in records], targets)


def _encode_strings(texts: list[str], info: Any) -> torch.Tensor:
    preprocessing = info.preprocessing
    if input_kind(info) == "words":
        from trainwell.data.languages import encode_words

        return encode_words([text.strip() for text in texts], preprocessing["alphabet"], preprocessing["max_len"])
    from trainwell.data.text import encode_texts

    return encode_texts(texts, preprocessing)


def _accepted(kind: str) -> str:
    return {
        "tabular": "a mapping of column -> values or a list of row mappings",
        "text": "a list of texts",
        "words": "a list of words",
        "images": "a list of image file paths",
        "features": "a mapping of feature name -> values",
    }.get(kind, "prepared inputs")
