"""How the built-in CNN and its image recipe were chosen: candidates on 28×28 and 8×8 digits, several seeds.

    python benchmarks/cnn_design.py --data ../shared/data/mnist-dev --seeds 3
    python benchmarks/cnn_design.py --data digits --seeds 5
    python benchmarks/cnn_design.py --data ../shared/data/mnist-dev --seeds 5 --candidates default \
        --regimes cli cli-onecycle-b32 cli-onecycle-lr5e-3 cli-onecycle-warmup0.1 cli-constant-ema

Each candidate is a set of ``CNN`` arguments (``classic`` is the hand-written two-convolution
network with a dense head of the PyTorch MNIST example, for reference), trained by
``trainwell.fit`` in two regimes:

- ``recipe``: what ``trainwell train --model cnn`` does: one-cycle to a peak lr of 1e-2, batch 64;
- ``defaults``: ``fit``'s own defaults (constant lr 1e-3), batch 64, without weight averaging;
- ``defaults-ema``: the same with ``ema_decay=0.99``, which ``fit`` now does by default for a CNN;
- ``recipe-ema``, ``lr3e-3``: the recipe with averaging; a constant lr of 3e-3;
- ``cli...``: the CLI itself, ``trainwell train --data DATA --model cnn --epochs 4 --seed S`` through
  :func:`trainwell.recipes.run` (the recipe the data gets, its batch size and loaders), plus the
  regime's options: ``cli`` is the recipe as it is (one-cycle to 1e-2, batch 64, no averaging under
  one-cycle), the others candidates for an image recipe of its own (none beat it on validation).

Decisions are taken on the validation split (20% of the training files, the model returned
being the epoch with the lowest val_loss); the test split (MNIST's t10k files) is printed apart
and was not used to choose. One JSON line per run goes to stdout; ``--summary FILE`` reads such
lines back and prints the Markdown table. Torch runs on ``--threads`` threads (default one; the
CLI leaves torch its default, two on the development machine).
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
    # The CNN's defaults, whatever they are (the cli regimes' reference).
    "default": {},
    # The default CNN since issue 15.
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
    # The recipe with training images shifted at random by up to 2 pixels (no flip: digits are not
    # symmetric), padded with zeros (the mean after standardisation, trainwell's ImageAugment) or
    # with the background's value.
    "recipe-crop2": {"lr": 1e-2, "schedule": "onecycle", "shift": ("zeros", 2)},
    "recipe-shift2bg": {"lr": 1e-2, "schedule": "onecycle", "shift": ("background", 2)},
}
# Options on top of `trainwell train --data DATA --model cnn --epochs E --seed S` (cli regimes).
CLI_REGIMES: dict[str, dict] = {
    "cli": {},
    "cli-onecycle-ema": {"lr": 1e-2, "schedule": "onecycle", "batch_size": 64, "ema_decay": 0.99},
    "cli-onecycle-lr5e-3": {"lr": 5e-3, "schedule": "onecycle", "batch_size": 64, "ema_decay": None},
    "cli-onecycle-lr2e-2": {"lr": 2e-2, "schedule": "onecycle", "batch_size": 64, "ema_decay": None},
    "cli-onecycle-warmup0.1": {"lr": 1e-2, "schedule": "onecycle", "warmup_fraction": 0.1, "batch_size": 64, "ema_decay": None},
    # Batches of 32: twice the steps; the lr 1e-2 is tuned for 64, so it is rescaled (sqrt) to 7.1e-3.
    "cli-onecycle-b32": {"lr": 1e-2, "schedule": "onecycle", "batch_size": 32, "ema_decay": None},
    "cli-cosine": {"lr": 1e-2, "schedule": "cosine", "batch_size": 64, "ema_decay": None},
    "cli-cosine-lr3e-3": {"lr": 3e-3, "schedule": "cosine", "batch_size": 64, "ema_decay": None},
    # fit's defaults for a CNN (constant 1e-3, averaged), and a higher constant lr, averaged.
    "cli-constant-ema": {"lr": 1e-3, "schedule": "constant", "batch_size": 64, "ema_decay": 0.99},
    "cli-constant-lr3e-3-ema": {"lr": 3e-3, "schedule": "constant", "batch_size": 64, "ema_decay": 0.99},
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


def run_cli(data: str, candidate: str, regime: str, seed: int, epochs: int) -> dict:
    """One run of the CLI's recipe for ``data`` with the candidate's model arguments and the regime's options."""
    import trainwell
    from trainwell.recipes import RunConfig, build_data, run

    if CANDIDATES[candidate] is None:
        raise SystemExit(f"candidate {candidate!r} is not a CNN: the cli regimes train the registry's cnn only.")
    options = dict(CLI_REGIMES[regime])
    model_args = {**CANDIDATES[candidate], **options.pop("model_args", {})}
    config = RunConfig(data=data, model="cnn", epochs=epochs, seed=seed, progress=False, model_args=model_args, **options)
    splits = build_data(config)
    started = time.perf_counter()
    result = run(config)
    seconds = time.perf_counter() - started
    row = {
        "data": data, "candidate": candidate, "regime": regime, "seed": seed, "epochs": epochs,
        "val_accuracy": result.best["val_accuracy"], "val_loss": result.best["val_loss"],
        "parameters": sum(p.numel() for p in result.model.parameters()), "seconds": seconds,
        "batch_size": config.batch_size, "lr": config.lr, "schedule": config.schedule, "ema_decay": config.ema_decay,
    }
    if splits.test is not None:
        row["test_accuracy"] = trainwell.evaluate(result.model, [splits.test]).metrics["accuracy"]
    return row


def shifted(fill: float, pad: int):
    """A training-batch transform: each image moved by up to ``pad`` pixels, the border filled with ``fill``."""
    import torch
    import torch.nn.functional as F

    def transform(images, generator):
        count, channels, height, width = images.shape
        padded = F.pad(images, (pad,) * 4, value=fill)
        top = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
        rows = (top[:, None] + torch.arange(height))[:, None, :, None]
        cols = (left[:, None] + torch.arange(width))[:, None, None, :]
        return padded[torch.arange(count)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]

    return transform


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
    model = classic_net(channels, classes, size) if CANDIDATES[candidate] is None else CNN(channels, classes, **arguments)
    if init_scale is not None:
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, torch.nn.Conv2d):
                    layer.weight.mul_(init_scale)
    train_loader, val_loader = splits.loaders(batch_size, seed=seed)
    options = dict(REGIMES[regime])
    if "shift" in options:
        fill, pad = options.pop("shift")
        train_loader.transform = shifted(0.0 if fill == "zeros" else float(splits.train[0].min()), pad)
    started = time.perf_counter()
    result = trainwell.fit(model, train_loader, val_loader, epochs=epochs, seed=seed, progress=False, **options)
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
        # Rows logged before --threads existed ran on one thread.
        run = (row["data"], row["regime"], row["epochs"], row["candidate"], row.get("threads", 1), row["seed"])
        if run in seen:  # a run repeated in another log (runs are deterministic): counted once
            continue
        seen.add(run)
        groups.setdefault(run[:5], []).append(row)
    print(
        "| data | regime | epochs | candidate | threads | parameters | seeds | val accuracy, mean (worst) | val_loss | "
        "test accuracy, mean (worst) | s per run |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (data, regime, epochs, candidate, threads), rows in sorted(groups.items()):
        val = [r["val_accuracy"] for r in rows]
        test = [r["test_accuracy"] for r in rows if "test_accuracy" in r]
        tested = f"{statistics.mean(test):.4f} ({min(test):.4f})" if test else "-"
        print(
            f"| {Path(data).name} | {regime} | {epochs} | {candidate} | {threads} | {rows[0]['parameters']:,} | {len(rows)} | "
            f"{statistics.mean(val):.4f} ({min(val):.4f}) | {statistics.mean(r['val_loss'] for r in rows):.4f} | "
            f"{tested} | {statistics.median(r['seconds'] for r in rows):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--regimes", nargs="*", default=list(REGIMES), help=f"of {', '.join([*REGIMES, *CLI_REGIMES])}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CLI leaves torch its default)")
    parser.add_argument("--summary", type=Path, help="print the table of a file of JSON lines and exit")
    args = parser.parse_args()
    if args.summary:
        summarize([json.loads(line) for line in args.summary.read_text().splitlines() if line.startswith("{")])
        return

    import logging

    import torch

    torch.set_num_threads(args.threads)  # on a shared 2-core machine, two threads per process were slower
    logging.getLogger("trainwell").setLevel(logging.WARNING)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for regime in args.regimes:
            for candidate in args.candidates:
                if regime in CLI_REGIMES:
                    row = run_cli(args.data, candidate, regime, seed, args.epochs)
                else:
                    row = run_one(args.data, candidate, regime, seed, args.epochs, args.batch_size)
                row["threads"] = args.threads
                print(json.dumps(row), flush=True)
                print(
                    f"# {candidate} {regime} seed {seed}: val {row['val_accuracy']:.4f}, test {row.get('test_accuracy', float('nan')):.4f}, "
                    f"{row['seconds']:.0f} s",
                    file=sys.stderr, flush=True,
                )


if __name__ == "__main__":
    main()
