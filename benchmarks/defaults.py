"""Do trainwell's defaults earn their place? Accuracy against the plain loop, on bundled data.

Part 1, ``fit`` defaults: a user's own Linear-ReLU-Dropout(0.3)-Linear network and shuffled
``DataLoader(TensorDataset)`` (batch 32), trained for the same epochs at the same lr (1e-3)
by the plain AdamW loop and by ``trainwell.fit`` with each LR schedule. Reported: validation
accuracy / validation loss of the final model, mean over seeds (split, weights and order seeded).

Part 2, the ``trainwell train`` recipe (MLP 64-256-128-10 with BatchNorm and dropout 0.2 on
digits, batch 64, 10 epochs): the schedule and peak lr it ships with, against alternatives.

    python benchmarks/defaults.py               # 8 seeds for part 1, 6 for part 2 (a few minutes)
    python benchmarks/defaults.py --seeds 3     # quicker, noisier
"""

from __future__ import annotations

import argparse
import logging
import statistics

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell.data import load_bundled
from trainwell.recipes import RunConfig, run

SCHEDULES = {
    "fit, constant (default)": {"schedule": "constant"},
    "fit, one-cycle": {"schedule": "onecycle"},
    "fit, cosine": {"schedule": "cosine"},
}
RECIPES = {
    "one-cycle, lr 1e-2 (shipped)": {},
    "one-cycle, lr 3e-3": {"lr": 3e-3},
    "constant, lr 3e-3": {"schedule": "constant", "lr": 3e-3},
    "constant, lr 1e-3": {"schedule": "constant", "lr": 1e-3},
}


def _user_model(inputs: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, classes))


def _score(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        outputs = model(inputs)
    return (outputs.argmax(1) == targets).float().mean().item(), nn.functional.cross_entropy(outputs, targets).item()


def plain_loop(splits, seed: int, hidden: int, epochs: int) -> tuple[float, float]:
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    torch.manual_seed(seed)
    model = _user_model(train_x.shape[1], hidden, splits.info.num_classes)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=32, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch_x), batch_y).backward()
            optimizer.step()
    return _score(model, val_x, val_y)


def with_fit(splits, seed: int, hidden: int, epochs: int, options: dict) -> tuple[float, float]:
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    torch.manual_seed(seed)
    model = _user_model(train_x.shape[1], hidden, splits.info.num_classes)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=32, shuffle=True)
    val_loader = DataLoader(TensorDataset(val_x, val_y), batch_size=256)
    trainwell.fit(model, loader, val_loader, epochs=epochs, lr=1e-3, progress=False, **options)
    return _score(model, val_x, val_y)


def _cell(scores: list[tuple[float, float]]) -> str:
    return f"{statistics.mean(a for a, _ in scores):.4f} / {statistics.mean(loss for _, loss in scores):.3f}"


def part_one(seeds: int) -> None:
    print("## Part 1: trainwell.fit with the user's model and DataLoader, lr 1e-3, batch 32\n")
    print(f"Validation accuracy / validation loss, mean of {seeds} seeds.\n")
    print("| data | hidden | epochs | plain AdamW loop | " + " | ".join(SCHEDULES) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(SCHEDULES))
    for name in ("digits", "breast_cancer", "wine"):
        all_splits = [load_bundled(name, seed=seed) for seed in range(seeds)]
        for hidden in (64, 256):
            for epochs in (10, 30):
                cells = [_cell([plain_loop(all_splits[s], s, hidden, epochs) for s in range(seeds)])]
                for options in SCHEDULES.values():
                    cells.append(_cell([with_fit(all_splits[s], s, hidden, epochs, options) for s in range(seeds)]))
                print(f"| {name} | {hidden} | {epochs} | " + " | ".join(cells) + " |", flush=True)


def part_two(seeds: int) -> None:
    print("\n## Part 2: the `trainwell train` recipe on digits (MLP 64-256-128-10, batch 64, 10 epochs)\n")
    print(f"Validation accuracy of the returned model (best epoch by val_loss): mean and worst of {seeds} seeds.\n")
    print("| schedule, peak lr | mean | worst | val_loss |")
    print("|---|---:|---:|---:|")
    for label, options in RECIPES.items():
        bests = [run(RunConfig(seed=seed, progress=False, **options)).best for seed in range(seeds)]
        accuracies = [best["val_accuracy"] for best in bests]
        loss = statistics.mean(best["val_loss"] for best in bests)
        print(f"| {label} | {statistics.mean(accuracies):.4f} | {min(accuracies):.4f} | {loss:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 8 for part 1, 6 for part 2)")
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    part_one(args.seeds or 8)
    part_two(args.seeds or 6)


if __name__ == "__main__":
    main()
