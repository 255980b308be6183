"""How the built-in CNN's architecture was chosen: candidates on 28×28 and 8×8 digits, several seeds.

    python benchmarks/cnn_design.py --data ../shared/data/mnist-dev --seeds 3
    python benchmarks/cnn_design.py --data digits --seeds 5

Each candidate is a set of ``CNN`` arguments (``classic`` is the hand-written two-convolution
network with a dense head of the PyTorch MNIST example, for reference), trained by
``trainwell.fit`` in two regimes:

- ``recipe``: what ``trainwell train --model cnn`` does: one-cycle to a peak lr of 1e-2, batch 64;
- ``defaults``: ``fit``'s own defaults (constant lr 1e-3), batch 64, without weight averaging;
- ``defaults-ema``: the same with ``ema_decay=0.99``, which ``fit`` now does by default for a CNN;
- ``recipe-ema``, ``lr3e-3``: the recipe with averaging; a constant lr of 3e-3.

Decisions are taken on the validation split (20% of the training files, the model returned
being the epoch with the lowest val_loss); the test split (MNIST's t10k files) is printed apart
and was not used to choose. One JSON line per run goes to stdout; ``--summary FILE`` reads such
lines back and prints the Markdown table. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

CANDIDATES = {
    # trainwell's CNN before: two blocks of one convolution, global average pooling.
    "old": {"channels": [32, 64], "convs_per_block": 1, "pooled_size": 1, "hidden": 0, "dropout": 0.3},
    # The digits recipe before (and now): the same with two convolutions per block.
    "gap2": {"channels": [32, 64], "convs_per_block": 2, "pooled_size": 1, "hidden": 0, "dropout": 0.3},
    "grid4": {"channels": [32, 64], "convs_per_block": 2, "pooled_size": 4, "hidden": 0, "dropout": 0.3},
    "grid4-dense": {"channels": [32, 64], "convs_per_block": 2, "pooled_size": 4, "hidden": 128, "dropout": 0.3},
    "grid7-dense": {"channels": [32, 64], "convs_per_block": 2, "pooled_size": 7, "hidden": 128, "dropout": 0.3},
    "gap3blocks": {"channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 1, "hidden": 0, "dropout": 0.3},
    "b3grid2": {"channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 2, "hidden": 0, "dropout": 0.3},
    "b3grid2-dense": {"channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 2, "hidden": 128, "dropout": 0.3},
    "b3gap-dense": {"channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 1, "hidden": 128, "dropout": 0.3},
    "b3grid2-wide": {"channels": [48, 96, 192], "convs_per_block": 2, "pooled_size": 2, "hidden": 0, "dropout": 0.3},
    # The default CNN.
    "b3grid2-drop0.1": {"channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 2, "hidden": 0, "dropout": 0.1},
    # The convolutions' initial weights scaled down: BatchNorm makes their scale irrelevant to the
    # outputs, so smaller weights take relatively larger steps (a higher effective lr).
    "b3gap-init0.3": {
        "channels": [32, 64, 128], "convs_per_block": 2, "pooled_size": 1, "hidden": 0, "dropout": 0.3, "init_scale": 0.3,
    },
    "classic": None,
}
REGIMES = {
    "recipe": {"lr": 1e-2, "schedule": "onecycle"},
    # fit's defaults without weight averaging (ema_decay="auto" now averages a CNN at a constant lr) ...
    "defaults": {"ema_decay": None},
    # ... and with it: fit's defaults for a CNN today.
    "defaults-ema": {"ema_decay": 0.99},
    "recipe-ema": {"lr": 1e-2, "schedule": "onecycle", "ema_decay": 0.99},
    "lr3e-3": {"lr": 3e-3},
}


def classic_net(in_channels: int, classes: int, size: int):
    """The PyTorch MNIST example's network: two convolutions, max pooling, a dense head with dropout."""
    from torch import nn

    pooled = (size // 2) ** 2 * 64
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(pooled, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, classes),
    )


def run_one(data: str, candidate: str, regime: str, seed: int, epochs: int, batch_size: int) -> dict:
    import torch

    import trainwell
    from trainwell.data import load
    from trainwell.models import CNN
    from trainwell.system import seed_everything

    splits = load(data, seed=seed, as_images=data == "digits")
    seed_everything(seed)
    channels, size = splits.info.input_shape[0], splits.info.input_shape[-1]
    classes = splits.info.num_classes
    arguments = dict(CANDIDATES[candidate] or {})
    init_scale = arguments.pop("init_scale", None)
    model = classic_net(channels, classes, size) if not arguments else CNN(channels, classes, **arguments)
    if init_scale is not None:
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, torch.nn.Conv2d):
                    layer.weight.mul_(init_scale)
    train_loader, val_loader = splits.loaders(batch_size, seed=seed)
    started = time.perf_counter()
    result = trainwell.fit(
        model, train_loader, val_loader, epochs=epochs, seed=seed, progress=False, **REGIMES[regime]
    )
    seconds = time.perf_counter() - started
    row = {
        "data": data, "candidate": candidate, "regime": regime, "seed": seed, "epochs": epochs,
        "val_accuracy": result.best["val_accuracy"], "val_loss": result.best["val_loss"],
        "parameters": sum(p.numel() for p in model.parameters()), "seconds": seconds,
    }
    if splits.test is not None:
        row["test_accuracy"] = trainwell.evaluate(model, [splits.test]).metrics["accuracy"]
    return row


def summarize(lines: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    seen = set()
    for row in lines:
        run = (row["data"], row["regime"], row["epochs"], row["candidate"], row["seed"])
        if run in seen:  # a run repeated in another log (runs are deterministic): counted once
            continue
        seen.add(run)
        groups.setdefault(run[:4], []).append(row)
    print("| data | regime | epochs | candidate | parameters | seeds | val accuracy, mean (worst) | val_loss | test accuracy, mean | s per run |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for (data, regime, epochs, candidate), rows in sorted(groups.items()):
        val = [r["val_accuracy"] for r in rows]
        test = [r["test_accuracy"] for r in rows if "test_accuracy" in r]
        print(
            f"| {Path(data).name} | {regime} | {epochs} | {candidate} | {rows[0]['parameters']:,} | {len(rows)} | "
            f"{statistics.mean(val):.4f} ({min(val):.4f}) | {statistics.mean(r['val_loss'] for r in rows):.4f} | "
            f"{statistics.mean(test):.4f} | {statistics.median(r['seconds'] for r in rows):.0f} |"
            if test else
            f"| {Path(data).name} | {regime} | {epochs} | {candidate} | {rows[0]['parameters']:,} | {len(rows)} | "
            f"{statistics.mean(val):.4f} ({min(val):.4f}) | {statistics.mean(r['val_loss'] for r in rows):.4f} | - | "
            f"{statistics.median(r['seconds'] for r in rows):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--regimes", nargs="*", default=list(REGIMES))
    parser.add_argument("--summary", type=Path, help="print the table of a file of JSON lines and exit")
    args = parser.parse_args()
    if args.summary:
        summarize([json.loads(line) for line in args.summary.read_text().splitlines() if line.startswith("{")])
        return

    import logging

    import torch

    torch.set_num_threads(1)  # on a shared 2-core machine, two threads per process were slower
    logging.getLogger("trainwell").setLevel(logging.WARNING)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for regime in args.regimes:
            for candidate in args.candidates:
                row = run_one(args.data, candidate, regime, seed, args.epochs, args.batch_size)
                print(json.dumps(row), flush=True)
                print(f"# {candidate} {regime} seed {seed}: val {row['val_accuracy']:.4f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
