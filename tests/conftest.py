"""Shared fixtures: small real data and tiny models that train in a fraction of a second."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from trainwell.data import TensorLoader


@pytest.fixture(autouse=True)
def _isolated_trainwell_logger():
    """Each test starts with the trainwell logger as an application would find it."""
    logger = logging.getLogger("trainwell")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """torch on ``count`` threads inside the block, the previous count put back after it (also on failure)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    """The test runs torch on one thread, so float sums keep one order and exact comparisons hold (and a
    busy machine is not oversubscribed); the previous count is restored, so later tests are not pinned."""
    with torch_threads(1):
        yield


@pytest.fixture
def blobs():
    """A 3-class problem with well-separated clusters: (inputs, targets) tensors."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    targets = torch.randint(0, 3, (300,), generator=generator)
    inputs = centers[targets] + 0.5 * torch.randn(300, 2, generator=generator)
    return inputs, targets


@pytest.fixture
def blob_loaders(blobs):
    inputs, targets = blobs
    return (
        TensorLoader(inputs[:240], targets[:240], batch_size=32, seed=0),
        TensorLoader(inputs[240:], targets[240:], batch_size=64, shuffle=False),
    )


def small_classifier(inputs: int = 2, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.fixture
def classifier():
    return small_classifier()


def write_mnist_like(directory, train: int = 600, test: int = 100, seed: int = 0, compress: bool = True):
    """Small MNIST-format files (28x28, 10 classes): each class lights its own band of rows, plus noise."""
    import numpy as np

    from trainwell.data.idx import write_idx_split

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 90, (count, 28, 28))
        for image, label in zip(images, labels):
            image[2 + 2 * label : 5 + 2 * label, 4:24] = 255
        write_idx_split(directory, split, images.astype(np.uint8), labels.astype(np.uint8), compress)
    return directory


@pytest.fixture
def mnist_dir(tmp_path):
    """A directory of small, learnable MNIST-format files written by the test (no download)."""
    return write_mnist_like(tmp_path / "mnist")


@pytest.fixture
def make_mnist_dir(tmp_path):
    """``make_mnist_dir(name, train=..., test=..., compress=...)`` writes MNIST-format files under tmp_path/name."""
    return lambda name="mnist", **options: write_mnist_like(tmp_path / name, **options)


@pytest.fixture(scope="session")
def zygote():
    """A process that has imported torch and trainwell once and forks a fresh child per training run."""
    from .child_training import Zygote

    server = Zygote()
    yield server
    server.close()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``trained_run(key, **run_options)``: a finished run of ``trainwell train``'s recipe (``recipes.run``),
    trained once per session for each key; returns its FitResult (``.run_dir``, ``.best_checkpoint``, ``.model``)."""
    from trainwell.recipes import RunConfig, run

    finished = {}

    def train(key: str, **options):
        if key not in finished:
            run_dir = tmp_path_factory.mktemp(key) / "run"
            finished[key] = run(RunConfig(run_dir=run_dir, progress=False, **options))
        return finished[key]

    return train
