"""MNIST and Fashion-MNIST: IDX files (gzip or raw) from a directory, downloaded when absent.

The IDX format: two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian 32-bit integer, then the values. Files are read strictly: a wrong magic number, an
unknown type, a body shorter or longer than the header promises, or images and labels of
different counts are refused with the file's name.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.data.download import RemoteFile, fetch
from trainwell.exceptions import DataError

if TYPE_CHECKING:
    from trainwell.data.bundled import Splits

logger = logging.getLogger("trainwell")

# IDX type codes and the NumPy dtypes they stand for (multi-byte values are big-endian).
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSource:
    """Where an IDX dataset is published: its gzip files with checksums, mirrors, class names."""

    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...] = field(default_factory=tuple)


# Checksums as their publishers give them (MNIST: the MD5s its mirrors have served since the
# original site; Fashion-MNIST: the MD5s in Zalando Research's README).
IDX_DATASETS = {
    "mnist": IdxSource(
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": IdxSource(
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        mirrors=(
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file, gzip-compressed or raw (told apart by content, not name).

    Raises:
        DataError: naming the file: missing, wrong magic number, unknown type code, a damaged
            gzip stream, or a body of the wrong length.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = write_idx(Path(folder) / "labels-idx1-ubyte", np.array([3, 1, 4], dtype=np.uint8))
        ...     read_idx(path).tolist()
        [3, 1, 4]
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"'{path}' does not exist or is not a file: expected an IDX file.")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise DataError(f"'{path}' is a damaged gzip file ({error}): it is truncated or corrupt. Download it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"'{path}' has the magic number 0x{raw[:4].hex() or '(empty)'}: not an IDX file, whose first two bytes "
            "are zero (0x00000803 for images, 0x00000801 for labels). Check that the file is the right one."
        )
    type_code, dims = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise DataError(
            f"'{path}' has the magic number 0x{raw[:4].hex()} with type code 0x{type_code:02x}: not an IDX type "
            f"(expected one of {', '.join(f'0x{code:02x}' for code in IDX_TYPES)})."
        )
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"'{path}' is truncated inside its header: {len(raw)} bytes, the header alone needs {header}.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        problem = "truncated" if body < expected else "longer than its header says"
        raise DataError(
            f"'{path}' is {problem}: its header promises shape {shape} ({expected:,} bytes of data), "
            f"but the file holds {body:,}. Download or copy the file again."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress``); return the path."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("=").str: code for code, dtype in IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str
    if key not in codes and array.dtype.str not in codes:
        raise DataError(f"write_idx cannot store dtype {array.dtype}: expected uint8, int8, int16, int32, float32 or float64.")
    code = codes.get(key, codes.get(array.dtype.str))
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_idx_split(directory: str | Path, split: str, images: np.ndarray, labels: np.ndarray, compress: bool = True) -> tuple[Path, Path]:
    """Write uint8 ``images (N, H, W)`` and ``labels (N,)`` as the MNIST files of ``split`` (``train`` or ``test``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     paths = write_idx_split(folder, "test", np.zeros((2, 28, 28), np.uint8), np.array([0, 1], np.uint8))
        ...     [path.name for path in paths]
        ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    images_stem, labels_stem = SPLIT_FILES[split]
    return (
        write_idx(directory / f"{images_stem}{suffix}", np.asarray(images, dtype=np.uint8), compress),
        write_idx(directory / f"{labels_stem}{suffix}", np.asarray(labels, dtype=np.uint8), compress),
    )


def find_split_files(directory: Path, split: str) -> tuple[Path, Path] | None:
    """The images and labels files of ``split`` in ``directory`` (raw or ``.gz``), or None if absent."""
    found = []
    for stem in SPLIT_FILES[split]:
        candidates = [directory / stem, directory / f"{stem}.gz"]
        existing = [path for path in candidates if path.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found[0], found[1]


def read_split(directory: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images ``(N, H, W)`` and labels ``(N,)`` of one split, checked against each other."""
    files = find_split_files(directory, split)
    if files is None:
        wanted = " and ".join(f"'{stem}[.gz]'" for stem in SPLIT_FILES[split])
        raise DataError(f"'{directory}' has no {split} files: expected {wanted}.")
    images_path, labels_path = files
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"'{images_path}' holds an array of shape {images.shape}: expected images (count, height, width).")
    if labels.ndim != 1:
        raise DataError(f"'{labels_path}' holds an array of shape {labels.shape}: expected labels (count,).")
    if len(images) != len(labels):
        raise DataError(
            f"'{images_path}' holds {len(images):,} images but '{labels_path}' holds {len(labels):,} labels: "
            "they must pair up one to one. One of the files is from another dataset or is damaged."
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"'{labels_path}' has label {labels[bad[0]]} at index {bad[0]}: expected labels 0 to {num_classes - 1}."
        )
    return images, labels.astype(np.int64)


def default_cache_dir(name: str) -> Path:
    """Where downloads of ``name`` go: ``$TRAINWELL_DATA_DIR/<name>``, else ``~/.cache/trainwell/<name>``."""
    root = os.environ.get("TRAINWELL_DATA_DIR")
    if root:
        return Path(root) / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "trainwell" / name


def ensure_files(
    directory: Path, source: IdxSource, download: bool, mirrors: Sequence[str] | None = None, **fetch_options: Any
) -> None:
    """Download the files of ``source`` that ``directory`` lacks; when none is missing, no network at all."""
    missing = [remote for remote in source.files if not _present(directory, remote.name)]
    if not missing:
        return
    if not download:
        raise DataError(
            f"'{directory}' lacks {', '.join(repr(remote.name) for remote in missing)} (raw or gzip) and "
            "download=False: put the files there, or allow the download."
        )
    for remote in missing:
        fetch(remote, directory, mirrors if mirrors is not None else source.mirrors, **fetch_options)


def _present(directory: Path, name: str) -> bool:
    raw_name = name.removesuffix(".gz")
    return (directory / name).is_file() or (directory / raw_name).is_file()


def load_idx(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    download: bool = True,
    source: IdxSource | None = None,
    mirrors: Sequence[str] | None = None,
    **fetch_options: Any,
) -> Splits:
    """MNIST-format data: the training files split into train/val (stratified), the t10k files as test.

    Pixels are scaled to [0, 1], then standardised with the mean and standard deviation of the
    training split's pixels (one value each, kept in ``info.normalization``). Inputs have shape
    ``(N, 1, H, W)``; an MLP flattens them.

    Args:
        name: ``mnist`` or ``fashion-mnist`` (or any name when ``source`` is given).
        data_dir: Directory holding the four files; None uses the download cache
            (:func:`default_cache_dir`). Missing files are downloaded into it.
        val_fraction: Share of the training files held out for validation.
        seed: Seed of the split.
        download: Download missing files; False refuses instead.
        source: Files, checksums and mirrors to use instead of the published ones.
        mirrors: Base URLs to use instead of the source's.
        **fetch_options: ``policy``, ``sleep``, ``timeout_s`` of :func:`trainwell.data.download.fetch`.

    Returns:
        :class:`~trainwell.data.Splits` with ``train``, ``val`` and ``test``.

    Raises:
        DataError: missing files (with download off), a damaged file, images and labels of
            different counts, labels outside the classes, or a failed download.
    """
    import torch

    from trainwell.data.bundled import DataInfo, Splits
    from trainwell.data.splits import check_several_classes, split_indices, standardize

    if source is None:
        if name not in IDX_DATASETS:
            raise DataError(f"data={name!r} is not an IDX dataset: expected one of {', '.join(map(repr, IDX_DATASETS))}.")
        source = IDX_DATASETS[name]
    directory = Path(data_dir) if data_dir is not None else default_cache_dir(name)
    if data_dir is not None and directory.exists() and not directory.is_dir():
        raise DataError(f"data_dir='{directory}' is a file: expected the directory holding the {name} IDX files.")
    ensure_files(directory, source, download, mirrors, **fetch_options)
    num_classes = len(source.class_names) or 256
    train_images, train_labels = read_split(directory, "train", num_classes)
    test_images, test_labels = read_split(directory, "test", num_classes)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"the training images in '{directory}' are {train_images.shape[1:]} but the test images are "
            f"{test_images.shape[1:]}: both splits must have one image size."
        )
    class_names = list(source.class_names) or [str(label) for label in range(int(train_labels.max()) + 1)]
    present = np.unique(train_labels)
    check_several_classes(
        [class_names[int(label)] for label in present], f"the training labels of '{directory}'",
        "Check that the labels file is the right one, or add images of the other classes.",
    )
    train_index, val_index = split_indices(train_labels, len(train_labels), val_fraction, seed, class_names, f"'{directory}'")
    scale = 1.0 / 255.0
    train_x, val_x, test_x = (
        torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(1).float().mul_(scale)
        for array in (train_images[train_index], train_images[val_index], test_images)
    )
    (train_x, val_x, test_x), normalization = standardize(train_x, val_x, test_x, per_feature=False)
    labels = torch.from_numpy(train_labels)
    info = DataInfo(
        name=name,
        task="classification",
        input_shape=(1, *train_images.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        normalization=normalization,
        preprocessing={"format": "idx", "scale": scale},
    )
    logger.info(
        "Loaded %s from %s: %d training, %d validation, %d test images of %s.",
        name, directory, len(train_index), len(val_index), len(test_labels), "x".join(map(str, info.input_shape)),
    )
    return Splits(
        train=(train_x, labels[train_index]),
        val=(val_x, labels[val_index]),
        info=info,
        test=(test_x, torch.from_numpy(test_labels)),
    )
