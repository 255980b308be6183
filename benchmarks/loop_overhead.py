"""Loop overhead: trainwell.fit against a careful hand-written loop and the tutorial loop.

The same MLP (784-256-128-10, ReLU) trains on the same in-memory MNIST-sized data (8,000
random samples, 10 classes) three ways:

  (a) careful: a hand-written loop with trainwell's default settings (fused AdamW, weight decay
      0.01 off biases, gradient clipping at 1.0, constant lr) over tensor slices of a permutation;
  (b) tutorial: the loop from the PyTorch tutorials over DataLoader(TensorDataset(...)) with
      AdamW's default implementation and ``loss.item()`` every step;
  (c) trainwell: ``trainwell.fit`` with ``trainwell.data.TensorLoader`` and default options.

Contenders run interleaved, round by round, and the median samples/s of each is reported with
its ratio to (a). Each timing covers a whole call (setup included) of ``--epochs`` epochs.

    python benchmarks/loop_overhead.py                  # batch sizes 64 and 256, 7 rounds
    python benchmarks/loop_overhead.py --rounds 11 --batch-sizes 64
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell.data import TensorLoader

SAMPLES, FEATURES, CLASSES = 8000, 784, 10


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, CLASSES))


def careful(inputs, targets, batch_size, epochs, seed):
    model = make_model(seed)
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    undecayed = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": 0.01}, {"params": undecayed, "weight_decay": 0.0}], lr=1e-3, fused=True
    )
    parameters = list(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            index = order[start : start + batch_size]
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def tutorial(inputs, targets, batch_size, epochs, seed):
    model = make_model(seed)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        total_loss = 0.0
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            loss = criterion(model(batch_x), batch_y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()


def with_trainwell(inputs, targets, batch_size, epochs, seed):
    model = make_model(seed)
    loader = TensorLoader(inputs, targets, batch_size=batch_size, seed=seed)
    trainwell.fit(model, loader, epochs=epochs, progress=False)


CONTENDERS = {"careful loop (a)": careful, "tutorial loop (b)": tutorial, "trainwell.fit (c)": with_trainwell}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256])
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)

    torch.manual_seed(0)
    inputs = torch.randn(SAMPLES, FEATURES)
    targets = torch.randint(0, CLASSES, (SAMPLES,))
    print(f"Machine: {machine()}")
    print(f"MLP 784-256-128-10, {SAMPLES} samples, {args.epochs} epochs per timing, {args.rounds} rounds, median\n")
    print("| batch | contender | samples/s | ratio to (a) |")
    print("|---:|---|---:|---:|")
    for batch_size in args.batch_sizes:
        for fn in CONTENDERS.values():  # warm-up: first-call costs (allocator, kernels) off the clock
            fn(inputs, targets, batch_size, 1, seed=0)
        ratios: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        speeds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for round_index in range(args.rounds):
            timings = {}
            for name, fn in CONTENDERS.items():
                started = time.perf_counter()
                fn(inputs, targets, batch_size, args.epochs, seed=round_index)
                timings[name] = time.perf_counter() - started
            reference = timings["careful loop (a)"]
            for name, seconds in timings.items():
                speeds[name].append(SAMPLES * args.epochs / seconds)
                ratios[name].append(reference / seconds)
        for name in CONTENDERS:
            print(
                f"| {batch_size} | {name} | {statistics.median(speeds[name]):,.0f} | "
                f"{statistics.median(ratios[name]):.3f} |"
            )


if __name__ == "__main__":
    main()
