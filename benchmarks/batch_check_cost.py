"""What checking every batch's targets costs (loop/batch_check.py): trainwell.fit with the check and without it.

The same MLP (784-256-128-10) trains on the same in-memory data (8,000 random samples, 10
classes) with ``trainwell.fit``'s defaults, twice per round: as shipped, and with a training step
that skips the per-batch check (everything else equal). Rounds alternate the order; the median
of the per-round ratios of samples/s (checked / unchecked) is reported, with the check's own time
per call measured apart.

    python benchmarks/batch_check_cost.py                     # batch sizes 64 and 256, 7 rounds, 1 thread
    python benchmarks/batch_check_cost.py --rounds 11 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from torch import nn

import trainwell
from trainwell.data import TensorLoader, batches
from trainwell.loop.batch_check import BatchCheck
from trainwell.loop.tasks import Task

SAMPLES, FEATURES, CLASSES = 8000, 784, 10


class Unchecked(trainwell.Trainer):
    """The built-in step without the per-batch check of the targets."""

    def train_step(self, batch):
        inputs, targets = batch
        return {"loss": self.task.loss(batches.forward(self.model, inputs), targets)}


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, CLASSES))


def samples_per_s(trainer_class, inputs, targets, batch_size, epochs, seed) -> float:
    loader = TensorLoader(inputs, targets, batch_size=batch_size, seed=seed)
    trainer = trainer_class(epochs=epochs, progress=False, early_stopping_patience=None, restore_best_weights=False)
    started = time.perf_counter()
    trainer.fit(model(seed), loader)
    return epochs * len(inputs) / (time.perf_counter() - started)


def check_call_us(batch_size: int, calls: int = 20000) -> float:
    check = BatchCheck(lambda: Task("classification", None, "multiclass", classes=CLASSES), on_device=False)
    outputs, targets = torch.zeros(batch_size, CLASSES), torch.randint(0, CLASSES, (batch_size,))
    started = time.perf_counter()
    for index in range(calls):
        check.at("train_loader", index, 1)
        check(outputs, targets)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(SAMPLES, FEATURES, generator=generator)
    targets = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds of {args.epochs} epochs")
    for batch_size in args.batch_sizes:
        for kind in (trainwell.Trainer, Unchecked):  # warm-up: first-use costs (imports, allocator) are no one's
            samples_per_s(kind, inputs, targets, batch_size, 1, 0)
        ratios, unchecked = [], []
        for round_number in range(args.rounds):
            order = [trainwell.Trainer, Unchecked] if round_number % 2 == 0 else [Unchecked, trainwell.Trainer]
            speed = {kind: samples_per_s(kind, inputs, targets, batch_size, args.epochs, round_number) for kind in order}
            ratios.append(speed[trainwell.Trainer] / speed[Unchecked])
            unchecked.append(speed[Unchecked])
        step_us = batch_size / statistics.median(unchecked) * 1e6
        check_us = check_call_us(batch_size)
        print(
            f"batch {batch_size}: checked/unchecked samples/s, median {statistics.median(ratios):.3f} "
            f"(rounds: {' '.join(f'{r:.3f}' for r in ratios)}); the check alone: {check_us:.1f} µs per batch, "
            f"{100 * check_us / step_us:.2f}% of a step ({step_us:.0f} µs, setup included)"
        )


if __name__ == "__main__":
    main()
