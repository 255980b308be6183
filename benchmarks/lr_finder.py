"""``--lr auto`` against the recipe's tuned lr: one-cycle, 10 epochs, the default MLP.

For each seed, the LR finder runs once on the recipe's model and data (exactly as
``trainwell train --lr auto`` does), and the model is trained with the finder's suggestion for
each divisor (lr of the lowest smoothed loss / divisor; the default divisor is 5) and with the
recipe's lr 1e-2. Reported: the validation accuracy and loss of the model each run returns (its
best epoch by val_loss), mean and worst over the seeds, and the suggested lrs.

    python benchmarks/lr_finder.py                          # digits, seeds 6..15, divisors 3 and 5
    python benchmarks/lr_finder.py --data breast_cancer --seeds 0 6
"""

from __future__ import annotations

import argparse
import logging
import statistics

from trainwell.recipes import RECIPE_LR, RunConfig, find_recipe_lr, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", nargs=2, type=int, default=(6, 16), metavar=("FIRST", "STOP"))
    parser.add_argument("--divisors", nargs="+", type=float, default=(3.0, 5.0))
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)

    results: dict[str, list[tuple[float, float, float]]] = {}
    for seed in range(*args.seeds):
        config = RunConfig(data=args.data, seed=seed, progress=False)
        found = find_recipe_lr(config)
        lrs = {f"recipe lr {RECIPE_LR:g}": RECIPE_LR}
        for divisor in args.divisors:
            lrs[f"auto, divisor {divisor:g}"] = min(max(found.min_loss_lr / divisor, 1e-6), 1.0)
        line = [f"seed {seed}:"]
        for label, lr in lrs.items():
            tuned = config.replace(lr=lr, reference_batch_size=config.batch_size)
            best = run(tuned).best
            results.setdefault(label, []).append((lr, best["val_accuracy"], best["val_loss"]))
            line.append(f"{label} lr {lr:.3g} acc {best['val_accuracy']:.4f} loss {best['val_loss']:.4f};")
        print(" ".join(line), flush=True)

    print(f"\n{args.data}, seeds {args.seeds[0]}..{args.seeds[1] - 1}")
    print("| lr | suggested lrs | mean val accuracy | worst | mean val_loss |")
    print("|---|---|---:|---:|---:|")
    for label, rows in results.items():
        lrs, accuracies, losses = zip(*rows)
        spread = f"{min(lrs):.3g} to {max(lrs):.3g}" if min(lrs) != max(lrs) else f"{lrs[0]:.3g}"
        print(
            f"| {label} | {spread} | {statistics.mean(accuracies):.4f} | {min(accuracies):.4f} | {statistics.mean(losses):.4f} |"
        )


if __name__ == "__main__":
    main()
