import pytest
import torch

from trainwell import DataError
from trainwell.data.augment import ImageAugment, augment_from


def test_flip_only_mirrors_some_samples_and_is_reproducible():
    images = torch.arange(4 * 1 * 2 * 3, dtype=torch.float32).reshape(4, 1, 2, 3).repeat(8, 1, 1, 1)
    augment = ImageAugment(flip=True, crop_padding=0)
    out = augment(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(0)))


def test_crop_shifts_within_the_padding():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    augment = ImageAugment(flip=False, crop_padding=1)
    positions = set()
    for seed in range(40):
        out = augment(image, torch.Generator().manual_seed(seed))
        assert out.shape == (1, 1, 5, 5) and out.sum() == 1.0
        positions.add(tuple(out[0, 0].nonzero()[0].tolist()))
    assert positions == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}


def test_settings_round_trip_and_validation():
    assert augment_from({"augment": ImageAugment(True, 2).to_dict()}) == ImageAugment(True, 2)
    assert augment_from({}) is None and augment_from({"augment": None}) is None
    with pytest.raises(DataError, match="crop_padding=-1 is out of range"):
        ImageAugment(crop_padding=-1)
    with pytest.raises(DataError, match=r"needs \(N, C, H, W\) images"):
        ImageAugment()(torch.zeros(3, 4), torch.Generator())
