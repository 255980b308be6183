"""Each built-in model on its bundled task, over several seeds, against a simple baseline.

(``benchmarks/results.py`` adds the plain hand-written loop and scikit-learn to every case; the
README's results table comes from it. This script remains for quick sweeps over many seeds.)

    python benchmarks/models.py                  # every task, 5 seeds (about 10 minutes here)
    python benchmarks/models.py --seeds 10 --only sunspots:lstm digits:cnn

Each run is exactly ``trainwell train --data DATA --model MODEL --seed SEED`` (the recipe's
defaults), scored as the returned model is: the epoch with the lowest validation loss. The
baselines see the same split:

- classification of tabular data and digits: scikit-learn's LogisticRegression on the same
  standardised features;
- sunspots: the naive forecast (next year = this year), in sunspot numbers as ``val_mae`` is;
- word_language: the majority class of the validation set.

Prints a Markdown table for the README. Torch runs on one thread: on a shared 2-core machine
two threads per process were up to 17x slower, which says nothing about the models.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

CASES = [
    ("digits", "mlp"),
    ("digits", "cnn"),
    ("iris", "mlp"),
    ("wine", "mlp"),
    ("breast_cancer", "mlp"),
    ("sunspots", "lstm"),
    ("sunspots", "gru"),
    ("word_language", "transformer"),
    ("word_language", "lstm"),
]


def baseline(data: str, seed: int) -> tuple[str, float]:
    """The baseline's name and its score on the split ``trainwell train`` uses for ``seed``."""
    from trainwell.data import load_bundled

    splits = load_bundled(data, seed=seed)
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    if data == "sunspots":
        return "naive last value", splits.info.preprocessing["naive_val_mae"]
    if data == "word_language":
        return "majority class", val_y.bincount().max().item() / len(val_y)
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=5000).fit(train_x.numpy(), train_y.numpy())
    return "logistic regression", float(model.score(val_x.numpy(), val_y.numpy()))


def run_case(data: str, model: str, seeds: int) -> dict:
    from trainwell.recipes import RunConfig, run

    scores, baselines, seconds = [], [], []
    metric = "val_mae" if data == "sunspots" else "val_accuracy"
    for seed in range(seeds):
        config = RunConfig(data=data, model=model, seed=seed, progress=False)
        started = time.perf_counter()
        result = run(config)
        seconds.append(time.perf_counter() - started)
        scores.append(result.best[metric])
        name, value = baseline(data, seed)
        baselines.append(value)
    lower_is_better = metric == "val_mae"
    worst = max(scores) if lower_is_better else min(scores)
    row = {
        "data": data,
        "model": model,
        "metric": metric,
        "mean": statistics.mean(scores),
        "worst": worst,
        "baseline": name,
        "baseline_mean": statistics.mean(baselines),
        "wins": sum((s <= b) if lower_is_better else (s >= b) for s, b in zip(scores, baselines)),
        "seeds": seeds,
        "seconds": statistics.median(seconds),
        "config": config,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", nargs="*", metavar="DATA:MODEL", help="run only these cases")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.WARNING)
    cases = [tuple(case.split(":")) for case in args.only] if args.only else CASES
    print(
        "| command | metric | trainwell, mean | worst seed | baseline | baseline, mean | seeds at least as good | s per run |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for data, model in cases:
        row = run_case(data, model, args.seeds)
        config = row["config"]
        recipe = f"{config.epochs} epochs, batch {config.batch_size}"
        note = f" ({row['note']})" if "note" in row else ""
        print(
            f"| `trainwell train --data {data} --model {model}` ({recipe}) | {row['metric']} | {row['mean']:.4f}{note} | "
            f"{row['worst']:.4f} | {row['baseline']} | {row['baseline_mean']:.4f} | {row['wins']}/{row['seeds']} | {row['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
