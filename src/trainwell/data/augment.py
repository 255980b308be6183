"""Training-only image augmentation on whole batches: random crop (after padding) and horizontal flip.

Applied by :class:`~trainwell.data.TensorLoader` to each training batch with the loader's
per-epoch generator, so the augmented stream is reproducible from ``(seed, epoch)`` and a
resumed run sees the same augmentations. Validation and test batches are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from trainwell.exceptions import DataError


@dataclass(frozen=True)
class ImageAugment:
    """Random crop and horizontal flip of ``(N, C, H, W)`` batches, each sample drawn independently.

    Args:
        flip: Mirror each image left-right with probability 0.5.
        crop_padding: Pad each side by this many pixels (with zeros, which is the mean after
            standardisation), then crop back to the original size at a random offset; 0 disables.

    Example:
        >>> augment = ImageAugment(flip=True, crop_padding=2)
        >>> augment(torch.zeros(8, 3, 16, 16), torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 16, 16])
    """

    flip: bool = True
    crop_padding: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise DataError(f"crop_padding={self.crop_padding!r} is out of range: expected an integer ≥ 0 (0 disables cropping).")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dim() != 4:
            raise DataError(f"ImageAugment needs (N, C, H, W) images: got a tensor of shape {tuple(images.shape)}.")
        count, channels, height, width = images.shape
        if self.crop_padding:
            pad = self.crop_padding
            padded = F.pad(images, (pad, pad, pad, pad))
            top = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
            left = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
            rows = (top[:, None] + torch.arange(height))[:, None, :, None]
            cols = (left[:, None] + torch.arange(width))[:, None, None, :]
            images = padded[torch.arange(count)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]
        if self.flip:
            flipped = torch.rand(count, generator=generator) < 0.5
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images

    def to_dict(self) -> dict[str, Any]:
        return {"flip": self.flip, "crop_padding": self.crop_padding}


def augment_from(preprocessing: dict[str, Any]) -> ImageAugment | None:
    """The augmentation a dataset's ``info.preprocessing`` asks for, or None."""
    settings = preprocessing.get("augment")
    return ImageAugment(**settings) if settings else None
