"""Self-healing against divergence, measured on real data: does rolling back and cutting the lr save runs?

A plain MLP (64-256-256-10, ReLU, no normalisation) trains on scikit-learn's bundled digits with
SGD (Nesterov momentum 0.9) at a peak lr of 1.0 and gradient clipping off, an lr that blows up:

  (a) rollbacks off (``max_rollbacks=0``): the first run of 5 non-finite steps ends training with a
      DivergenceError, as trainwell did before self-healing;
  (b) the default (``max_rollbacks=3``, ``rollback_lr_factor=0.5``): roll back to the best good state
      and halve the lr, up to 3 times.

For each seed: whether the run completed, and the best validation accuracy it reached (for a run
that died, the best epoch before it died). Two schedules: one-cycle (warm-up into a peak that is too
high, the common way a healthy run blows up mid-way) and constant (too high from the first step).

    python benchmarks/healing.py              # 8 seeds, about 2 minutes on 2 cores
    python benchmarks/healing.py --seeds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics

import torch
from torch import nn

import trainwell
from trainwell.data import load_bundled


def run(schedule: str, max_rollbacks: int, seed: int, splits) -> tuple[bool, float, int]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    train_loader, val_loader = splits.loaders(64, seed=seed)
    trainer = trainwell.Trainer(
        epochs=10,
        lr=1.0,
        optimizer="sgd",
        schedule=schedule,
        max_grad_norm=None,
        max_rollbacks=max_rollbacks,
        seed=seed,
        progress=False,
    )
    try:
        trainer.fit(model, train_loader, val_loader)
        completed = True
    except trainwell.DivergenceError:
        completed = False
    best = max((row["val_accuracy"] for row in trainer.history), default=0.0)
    rollbacks = sum(event["event"] == "rollback" for event in trainer.events)
    return completed, best, rollbacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    splits = load_bundled("digits", seed=0)
    print("| schedule | max_rollbacks | runs completed | best val accuracy, mean | per seed | rollbacks used |")
    print("|---|---:|---:|---:|---|---:|")
    for schedule in ("onecycle", "constant"):
        for max_rollbacks in (0, 3):
            results = [run(schedule, max_rollbacks, seed, splits) for seed in range(args.seeds)]
            completed = sum(done for done, _, _ in results)
            per_seed = " ".join(f"{best:.3f}{'' if done else '†'}" for done, best, _ in results)
            print(
                f"| {schedule} | {max_rollbacks} | {completed}/{len(results)} | "
                f"{statistics.mean(best for _, best, _ in results):.3f} | {per_seed} | {sum(r for _, _, r in results)} |"
            )
    print("\n† the run ended with DivergenceError; its best epoch before that is shown.")


if __name__ == "__main__":
    main()
