"""Weight averaging (``ema_decay``) against none, on every recipe and on ``fit``'s own defaults, several seeds.

    python benchmarks/averaging.py --log averaging.jsonl                    # every case, seeds 0-4
    python benchmarks/averaging.py --only digits:cnn --decays none 0.99 0.999
    python benchmarks/averaging.py --summary averaging.jsonl

Two kinds of case, each run with ``ema_decay`` None and each of ``--decays``:

- ``DATA:MODEL``: the recipe, ``trainwell train --data DATA --model MODEL --seed S`` (one-cycle to
  its peak lr), scored as the model it returns;
- ``fit:DATA:MODEL``: ``trainwell.fit`` with its own defaults (constant lr 1e-3, AdamW, clipping,
  early stopping) on the same data and registry model, batches of 64 from ``splits.loaders()``,
  the recipe's epochs (4 for MNIST's CNN).

Classification is scored by accuracy (MNIST: on its 1,000 test images), regression by MAE in the
targets' units. A decay "wins" a case when its mean beats no averaging's mean. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

MNIST_DEV = "mnist-dev"
CASES = [
    "digits:mlp", "digits:cnn", "iris:mlp", "wine:mlp", "breast_cancer:mlp", "diabetes:mlp", "sunspots:lstm",
    "word_language:lstm", f"{MNIST_DEV}:cnn", f"{MNIST_DEV}:mlp", "fit:digits:mlp", "fit:digits:cnn", "fit:iris:mlp",
    "fit:wine:mlp", "fit:breast_cancer:mlp", "fit:diabetes:mlp", "fit:sunspots:lstm", f"fit:{MNIST_DEV}:cnn",
    f"fit:{MNIST_DEV}:mlp",
]  # fmt: skip
EPOCHS = {f"{MNIST_DEV}:cnn": 4}


def run(case: str, decay: float | None, seed: int, mnist_dev: Path) -> float:
    import trainwell
    from trainwell.data.targets import target_scaling_of
    from trainwell.recipes import RunConfig, build_data, build_model
    from trainwell.recipes import run as run_recipe
    from trainwell.system import seed_everything

    with_fit = case.startswith("fit:")
    data, model = case.removeprefix("fit:").split(":")
    source = str(mnist_dev) if data == MNIST_DEV else data
    options = {"epochs": EPOCHS[f"{data}:{model}"]} if f"{data}:{model}" in EPOCHS else {}
    config = RunConfig(data=source, model=model, seed=seed, progress=False, ema_decay=decay, **options)
    splits = build_data(config)
    if with_fit:
        seed_everything(seed)
        network = build_model(config, splits.info)
        train_loader, val_loader = splits.loaders(64, seed=seed)
        trainwell.fit(network, train_loader, val_loader, epochs=config.epochs, seed=seed, ema_decay=decay, progress=False)
    else:
        network = run_recipe(config).model
    inputs, targets = splits.test if splits.test is not None else splits.val
    measured = trainwell.evaluate(network, [(inputs, targets)], target_scaling=target_scaling_of(splits.info))
    return measured.metrics["accuracy"] if "accuracy" in measured.metrics else measured.metrics["mae"]


def summarize(rows: list[dict[str, Any]]) -> str:
    by_case: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {}).setdefault(str(row["decay"]), []).append(row["score"])
    decays = sorted({str(row["decay"]) for row in rows}, key=lambda d: (d != "None", d))
    lines = [
        "| case | metric | seeds | " + " | ".join(f"ema_decay {d}: mean (worst)" for d in decays) + " |",
        "|---|---|---:|" + "---:|" * len(decays),
    ]
    for case, scores in by_case.items():
        higher = not case.endswith(("diabetes:mlp", "sunspots:lstm"))
        worst = min if higher else max
        cells = []
        for decay in decays:
            values = scores.get(decay)
            cells.append(f"{statistics.mean(values):.4f} ({worst(values):.4f})" if values else "-")
        seeds = len(scores.get("None", []))
        lines.append(f"| `{case}` | {'accuracy' if higher else 'MAE'} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", metavar="CASE")
    parser.add_argument("--decays", nargs="*", default=["none", "0.99", "0.999"])
    parser.add_argument("--mnist-dev", type=Path, default=Path("../shared/data/mnist-dev"))
    parser.add_argument("--log", type=Path)
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args()
    if args.summary:
        print(summarize([json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]))
        return

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    decays = [None if d == "none" else float(d) for d in args.decays]
    rows = []
    for case in args.only or CASES:
        if MNIST_DEV in case and not args.mnist_dev.is_dir():
            print(f"# skipped {case}: no folder {args.mnist_dev}", file=sys.stderr)
            continue
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for decay in decays:
                row = {"case": case, "decay": decay, "seed": seed, "score": run(case, decay, seed, args.mnist_dev)}
                rows.append(row)
                print(f"# {case} ema {decay} seed {seed}: {row['score']:.4f}", file=sys.stderr, flush=True)
                if args.log:
                    with args.log.open("a") as log:
                        log.write(json.dumps(row) + "\n")
    print(f"torch {torch.__version__}, 1 thread")
    print(summarize(rows))


if __name__ == "__main__":
    main()
