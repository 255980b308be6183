"""Image folders: ``root/<class>/*.png|jpg|...``, decoded with Pillow, resized, standardised per channel.

Class names are the sub-folder names, sorted. Every image is resized to one size (``image_size``,
or the first image's size), converted to RGB (or kept grayscale when every image is), scaled to
[0, 1] and standardised with the training split's per-channel mean and standard deviation.
Training-only augmentation (random crop and flip) is applied per batch by the loader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.exceptions import DataError

if TYPE_CHECKING:
    from trainwell.data.bundled import Splits

logger = logging.getLogger("trainwell")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BAD_IMAGE_POLICIES = ("error", "skip")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image folders need Pillow, which is not installed: pip install 'trainwell[images]'.") from None
    return Image


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted sub-folders) and ``(file, label)`` for every image file under them.

    Raises:
        DataError: ``root`` is missing, has no class sub-folders, or a class folder has no images.
    """
    if not root.is_dir():
        raise DataError(f"'{root}' does not exist or is not a directory: expected an image folder root/<class>/*.png.")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        raise DataError(f"'{root}' has no sub-folders: expected one folder per class holding its images (root/<class>/*.png).")
    files: list[tuple[Path, int]] = []
    ignored = 0
    for label, class_dir in enumerate(class_dirs):
        found = 0
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((path, label))
                found += 1
            else:
                ignored += 1
        if not found:
            raise DataError(
                f"class folder '{class_dir}' has no images (expected files ending in {', '.join(IMAGE_EXTENSIONS)}): "
                "add images or remove the folder."
            )
    if ignored:
        logger.info("Ignored %d file(s) under '%s' that are not images by their extension.", ignored, root)
    return [path.name for path in class_dirs], files


def decode(path: Path, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """One image as ``(H, W, C)`` uint8, resized to ``size`` (height, width) and converted to ``channels``.

    Raises:
        OSError, ValueError: Pillow could not decode the file.
    """
    Image = _pillow()
    with Image.open(path) as image:
        image.load()
        if channels is None:
            channels = 1 if image.mode in GRAYSCALE_MODES else 3
        image = image.convert("L" if channels == 1 else "RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def load_image_folder(
    root: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    image_size: int | Sequence[int] | None = None,
    augment: bool = False,
    crop_padding: int | None = None,
    bad_images: str = "error",
) -> Splits:
    """Load ``root/<class>/*`` images, split them (stratified) and standardise them.

    Args:
        root: The folder of class folders.
        val_fraction: Share of images held out for validation.
        seed: Seed of the split (and, through the loader, of the augmentation).
        image_size: Resize every image to this size (an int for square images, or
            ``(height, width)``); None keeps the first image's size.
        augment: Random crop and horizontal flip of training batches (recorded in
            ``info.preprocessing["augment"]``; the loaders apply it).
        crop_padding: Padding of the random crop; None picks 1/8 of the smaller side (4 for 32x32).
        bad_images: A file that fails to decode is an ``"error"`` (default), or ``"skip"``-ped and
            counted in the log.

    Returns:
        :class:`~trainwell.data.Splits` with inputs ``(N, C, H, W)`` float32.

    Raises:
        DataError: missing folder, no class folders, an empty class, an undecodable image
            (``bad_images="error"``), a class with a single image.
        ConfigError: an unknown ``bad_images`` policy or an invalid ``image_size``.
    """
    import torch

    from trainwell.data.augment import ImageAugment
    from trainwell.data.bundled import DataInfo, Splits
    from trainwell.data.splits import check_several_classes, split_indices, standardize
    from trainwell.exceptions import ConfigError

    if bad_images not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"bad_images={bad_images!r} is not a valid choice: expected one of {', '.join(map(repr, BAD_IMAGE_POLICIES))}.")
    size = _size(image_size)
    root = Path(root)
    _pillow()
    class_names, files = list_images(root)
    check_several_classes(
        class_names, f"the image folder '{root}'", "Put each class's images in a folder of its own: root/<class>/*.png."
    )

    # Image headers (cheap to read) fix the channel count and, unless given, the size: the first image's.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        headers = [header for header in pool.map(lambda item: _header(item[0]), files) if header is not None]
    channels = 1 if headers and all(mode_channels == 1 for mode_channels, _ in headers) else 3
    probe_size = size or (headers[0][1] if headers else None)

    def decode_or_none(item: tuple[Path, int]) -> tuple[np.ndarray | None, str | None]:
        try:
            return decode(item[0], probe_size, channels), None
        except Exception as error:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
            return None, f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(decode_or_none, files))
    bad = [(path, problem) for (path, _), (_, problem) in zip(files, decoded) if problem is not None]
    if bad and bad_images == "error":
        path, problem = bad[0]
        raise DataError(
            f"'{path}' could not be decoded as an image ({problem}); {len(bad)} of {len(files)} files fail. "
            "Remove or replace them, or pass bad_images='skip' (--bad-images skip) to skip them with a count in the log."
        )
    if bad:
        logger.warning("Skipped %d of %d image(s) under '%s' that failed to decode (bad_images='skip'), e.g. '%s'.", len(bad), len(files), root, bad[0][0])
    kept = [(array, label) for (array, _), (_, label) in zip(decoded, files) if array is not None]
    if not kept:
        raise DataError(f"no image under '{root}' could be decoded: expected PNG, JPEG or another format Pillow reads.")
    labels = np.array([label for _, label in kept], dtype=np.int64)
    present = np.unique(labels)
    if len(present) < len(class_names):
        empty = [class_names[i] for i in range(len(class_names)) if i not in set(present.tolist())]
        raise DataError(f"after skipping undecodable files, the class folders {empty} of '{root}' have no images left.")
    train_index, val_index = split_indices(labels, len(labels), val_fraction, seed, class_names, f"'{root}'")
    pixels = torch.from_numpy(np.stack([array for array, _ in kept])).permute(0, 3, 1, 2).contiguous()
    scale = 1.0 / 255.0
    train_index, val_index = torch.from_numpy(train_index), torch.from_numpy(val_index)
    (train_x, val_x), normalization = standardize(pixels[train_index].float() * scale, pixels[val_index].float() * scale)
    height, width = pixels.shape[2:]
    preprocessing: dict[str, Any] = {
        "format": "images",
        "image_size": [int(height), int(width)],
        "channels": int(channels),
        "scale": scale,
        "resample": "bilinear",
        "augment": None,
    }
    if augment:
        padding = crop_padding if crop_padding is not None else max(1, min(height, width) // 8)
        preprocessing["augment"] = ImageAugment(flip=True, crop_padding=padding).to_dict()
    info = DataInfo(
        name=str(root),
        task="classification",
        input_shape=tuple(train_x.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        normalization=normalization,
        preprocessing=preprocessing,
    )
    logger.info(
        "Loaded %d images of %d classes from '%s' as %dx%dx%d (%d training, %d validation)%s.",
        len(kept), len(class_names), root, channels, height, width, len(train_index), len(val_index),
        ", training batches augmented (random crop, flip)" if augment else "",
    )
    labels_tensor = torch.from_numpy(labels)
    return Splits(train=(train_x, labels_tensor[train_index]), val=(val_x, labels_tensor[val_index]), info=info)


def _header(path: Path) -> tuple[int, tuple[int, int]] | None:
    """``(channels, (height, width))`` from an image's header, or None when it cannot be read."""
    try:
        with _pillow().open(path) as image:
            return (1 if image.mode in GRAYSCALE_MODES else 3), (image.height, image.width)
    except Exception:  # an unreadable file is reported, with the bad_images policy, when decoded
        return None


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    from trainwell.exceptions import ConfigError

    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        values = [image_size, image_size]
    elif isinstance(image_size, Sequence) and len(image_size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in image_size):
        values = list(image_size)
    else:
        values = []
    if len(values) != 2 or not all(1 <= v <= 4096 for v in values):
        raise ConfigError(f"image_size={image_size!r} is invalid: expected an integer from 1 to 4096, or (height, width).")
    return values[0], values[1]
