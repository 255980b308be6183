"""Early stopping against the one-cycle schedule: does ``--epochs 40`` ever end worse than ``--epochs 10``?

    python benchmarks/early_stopping.py                       # digits MLP, seeds 0-4, every rule
    python benchmarks/early_stopping.py --model cnn --rules annealed-0.5
    python benchmarks/early_stopping.py --data breast_cancer --epochs 30 --seeds 10 --rules epoch-1 annealed-0.5

Each run is ``trainwell train --data DATA --model MODEL --epochs E --seed S`` (the recipe:
one-cycle to its peak lr, patience 5, best weights restored), scored as the model it returns, for
the two epoch counts of ``--epochs`` (10 and 40 by default; one count compares the rules alone).
The rules say from which epoch a lack of improvement counts against patience:

- ``epoch-1``: from the first epoch (trainwell before this rule);
- ``peak``: from the first epoch after the one-cycle warm-up (the lr's peak);
- ``annealed-0.5`` / ``annealed-0.1``: from the first epoch after the warm-up that ends with the lr
  at most half (a tenth) of its peak.

Prints, per rule, each seed's val accuracy and val_loss at 10 and 40 epochs and where the
40-epoch run stopped. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import logging
import statistics

RULES = {"epoch-1": None, "peak": float("inf"), "annealed-0.5": 0.5, "annealed-0.1": 0.1}


def run(data: str, model: str, epochs: int, seed: int, rule: str, ema_decay: float | None = None) -> dict:
    from trainwell.loop import schedules, setup
    from trainwell.recipes import RunConfig
    from trainwell.recipes import run as run_recipe

    share = RULES[rule]
    original = schedules.patience_start_epoch
    setup.patience_start_epoch = (
        (lambda config, steps: 1) if share is None else (lambda config, steps: original(config, steps, share))
    )
    try:
        config = RunConfig(data=data, model=model, epochs=epochs, seed=seed, progress=False, ema_decay=ema_decay)
        result = run_recipe(config)
    finally:
        setup.patience_start_epoch = original
    return {
        "accuracy": result.best.get("val_accuracy", result.best.get("val_mae")),
        "loss": result.best["val_loss"],
        "stopped": result.final["epoch"] if result.stopped_early else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 40], help="one or two epoch counts")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rules", nargs="*", default=list(RULES))
    parser.add_argument("--ema-decay", type=float, help="also average the weights (ema_decay)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.WARNING)
    short_epochs, long_epochs = args.epochs[0], args.epochs[-1]
    print(f"{args.data}, {args.model}, seeds 0-{args.seeds - 1}, ema_decay {args.ema_decay}, torch threads 1")
    print(
        f"| rule | val accuracy, {short_epochs} epochs | val accuracy, {long_epochs} epochs | {long_epochs} worse (accuracy) | "
        f"val_loss, {short_epochs} | val_loss, {long_epochs} | {long_epochs} worse (loss) | {long_epochs}-epoch runs stopped at |"
    )
    print("|---|---|---|---:|---:|---:|---:|---|")
    for rule in args.rules:
        short = [run(args.data, args.model, short_epochs, seed, rule, args.ema_decay) for seed in range(args.seeds)]
        long = (
            short if long_epochs == short_epochs
            else [run(args.data, args.model, long_epochs, seed, rule, args.ema_decay) for seed in range(args.seeds)]
        )
        worse_accuracy = sum(b["accuracy"] < a["accuracy"] for a, b in zip(short, long))
        worse_loss = sum(b["loss"] > a["loss"] for a, b in zip(short, long))
        print(
            f"| {rule} | {_accuracies(short)} | {_accuracies(long)} | {worse_accuracy}/{args.seeds} | "
            f"{_losses(short)} | {_losses(long)} | "
            f"{worse_loss}/{args.seeds} | {', '.join(str(r['stopped'] or '-') for r in long)} |",
            flush=True,
        )


def _losses(rows: list[dict]) -> str:
    shown = " ".join(f"{row['loss']:.4f}" for row in rows)
    return f"{shown} (mean {statistics.mean(row['loss'] for row in rows):.4f})"


def _accuracies(rows: list[dict]) -> str:
    shown = " ".join(f"{row['accuracy']:.4f}" for row in rows)
    return f"{shown} (mean {statistics.mean(row['accuracy'] for row in rows):.4f})"


if __name__ == "__main__":
    main()
