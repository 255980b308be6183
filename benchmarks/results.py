"""Every built-in recipe on every dataset it fits: trainwell against a plain hand-written loop and scikit-learn.

    python benchmarks/results.py                                   # every case, 3 seeds (about an hour here)
    python benchmarks/results.py --seeds 5 --only diabetes:mlp digits:cnn
    python benchmarks/results.py --mnist-dev ../shared/data/mnist-dev --only mnist-dev:cnn
    python benchmarks/results.py --log runs.jsonl ...              # also keep one JSON line per run
    python benchmarks/results.py --summary runs.jsonl              # the table of logged runs, no training

For each case and seed, on the same split (the recipe's, from its seed):

- **trainwell**: exactly ``trainwell train --data DATA --model MODEL --seed SEED`` (plus the
  case's options, e.g. ``--epochs 4``), scored as the model it returns (the epoch with the
  lowest validation loss);
- **plain loop**: what a user writes by hand: the same model (built from the registry with the
  recipe's arguments, seeded the same), ``torch.optim.AdamW(lr=1e-3)`` at a constant rate,
  shuffled batches of the recipe's size, the recipe's number of epochs, no clipping, schedule or
  early stopping, scored as the model after its last epoch;
- **scikit-learn**: a linear model on the same standardised features where one applies:
  ``LogisticRegression`` for classification (on character 1-3-grams for word_language),
  ``RidgeCV`` for regression (the 20-year windows for sunspots), plus the naive forecast (next
  year = this year) for sunspots.

Classification is scored by accuracy, regression by MAE in the targets' own units (diabetes:
disease progression; sunspots: sunspot numbers). MNIST (the dev files: 4,000 training images,
1,000 t10k test images) is scored on the test images, the others on the validation split.
Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MNIST_DEV = "mnist-dev"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("digits", "mlp", {}),
    ("digits", "cnn", {}),
    ("digits", "transformer", {}),
    ("iris", "mlp", {}),
    ("wine", "mlp", {}),
    ("breast_cancer", "mlp", {}),
    ("diabetes", "mlp", {}),
    ("sunspots", "lstm", {}),
    ("sunspots", "gru", {}),
    ("word_language", "lstm", {}),
    ("word_language", "gru", {}),
    ("word_language", "transformer", {}),
    (MNIST_DEV, "cnn", {"epochs": 4}),
    (MNIST_DEV, "mlp", {}),
]


def run_case(data: str, model: str, options: dict[str, Any], seed: int, mnist_dev: Path) -> dict[str, Any]:
    """One seed of one case: trainwell's recipe, the plain loop and the scikit-learn baseline on the same split."""
    from trainwell.recipes import RunConfig, build_data
    from trainwell.recipes import run as run_recipe

    source = str(mnist_dev) if data == MNIST_DEV else data
    config = RunConfig(data=source, model=model, seed=seed, progress=False, **options)
    splits = build_data(config)
    started = time.perf_counter()
    result = run_recipe(config)
    trainwell_seconds = time.perf_counter() - started
    row: dict[str, Any] = {
        "data": data,
        "model": model,
        "options": options,
        "seed": seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "metric": _metric_name(splits),
        "trainwell": score(result.model, splits),
        "trainwell_seconds": trainwell_seconds,
        "trainwell_epochs_run": len(result.history),
    }
    started = time.perf_counter()
    row["plain"] = score(plain_loop(config, splits, seed), splits)
    row["plain_seconds"] = time.perf_counter() - started
    row.update(baselines(data, splits))
    return row


def plain_loop(config: Any, splits: Any, seed: int) -> Any:
    """The hand-written loop: the recipe's model and batch size, AdamW at 1e-3, the recipe's epochs, the last epoch's model."""
    import torch

    from trainwell.recipes import build_model
    from trainwell.system import seed_everything

    seed_everything(seed)
    model = build_model(config, splits.info)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets = splits.train
    classification = splits.info.task == "classification"
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:  # BatchNorm cannot train on one sample
                continue
            outputs = model(inputs[index])
            if classification:
                loss = torch.nn.functional.cross_entropy(outputs, targets[index])
            else:
                loss = torch.nn.functional.mse_loss(outputs, targets[index].reshape(outputs.shape))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def score(model: Any, splits: Any) -> float:
    """Accuracy, or MAE in the targets' own units, on the test split where there is one, else validation."""
    import torch

    from trainwell.data.targets import target_scaling_of

    inputs, targets = splits.test if splits.test is not None else splits.val
    model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(inputs[i : i + 512]) for i in range(0, len(inputs), 512)])
    if splits.info.task == "classification":
        return (outputs.argmax(dim=1) == targets).float().mean().item()
    scaling = target_scaling_of(splits.info)
    outputs, targets = outputs.reshape(len(outputs), -1), targets.reshape(len(targets), -1)
    if scaling is not None:
        outputs, targets = scaling.unscale(outputs), scaling.unscale(targets)
    return (outputs - targets).abs().mean().item()


def baselines(data: str, splits: Any) -> dict[str, Any]:
    """The scikit-learn baseline (and, for the series, the naive forecast) on the same split."""
    import numpy as np

    from trainwell.data.targets import target_scaling_of

    (train_x, train_y), (eval_x, eval_y) = splits.train, splits.test if splits.test is not None else splits.val
    found: dict[str, Any] = {}
    if data == "word_language":
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        alphabet = splits.info.preprocessing["alphabet"]
        words = lambda ids: ["".join(alphabet[i - 2] if i >= 2 else "?" for i in row if i) for row in ids.tolist()]  # noqa: E731
        model = make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(1, 3)), LogisticRegression(max_iter=3000))
        model.fit(words(train_x), train_y.numpy())
        found["sklearn"], found["sklearn_name"] = float(model.score(words(eval_x), eval_y.numpy())), "logistic regression, char 1-3-grams"
        return found
    flat_train, flat_eval = train_x.reshape(len(train_x), -1).numpy(), eval_x.reshape(len(eval_x), -1).numpy()
    if splits.info.task == "classification":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=5000).fit(flat_train, train_y.numpy())
        found["sklearn"], found["sklearn_name"] = float(model.score(flat_eval, eval_y.numpy())), "logistic regression"
        return found
    from sklearn.linear_model import RidgeCV

    scaling = target_scaling_of(splits.info)
    mean, std = scaling.mean[0], scaling.std[0]
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(flat_train, train_y.reshape(len(train_y)).numpy())
    predicted = model.predict(flat_eval) * std + mean
    truth = eval_y.reshape(len(eval_y)).numpy() * std + mean
    found["sklearn"], found["sklearn_name"] = float(np.abs(predicted - truth).mean()), "ridge regression (alpha by CV)"
    if data == "sunspots":
        found["naive"] = splits.info.preprocessing["naive_val_mae"]
    return found


def _metric_name(splits: Any) -> str:
    split = "test" if splits.test is not None else "val"
    return f"{split} accuracy" if splits.info.task == "classification" else f"{split} MAE"


def summarize(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the logged runs, one line per case."""
    cases: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cases.setdefault((row["data"], row["model"], json.dumps(row["options"], sort_keys=True)), []).append(row)
    lines = [
        "| `trainwell train` | metric | seeds | trainwell: mean (worst) | plain loop: mean (worst) | scikit-learn: mean | s per run: trainwell / plain |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (data, model, options), group in cases.items():
        higher = "accuracy" in group[0]["metric"]
        worst = min if higher else max
        ours, plain = [r["trainwell"] for r in group], [r["plain"] for r in group]
        flags = "".join(f" --{key.replace('_', '-')} {value}" for key, value in json.loads(options).items())
        data_flag = "../shared/data/mnist-dev" if data == MNIST_DEV else data
        baseline = f"{statistics.mean(r['sklearn'] for r in group):.4f} ({group[0]['sklearn_name']})"
        if "naive" in group[0]:
            baseline += f"; naive forecast {statistics.mean(r['naive'] for r in group):.2f}"
        lines.append(
            f"| `--data {data_flag} --model {model}{flags}` ({group[0]['epochs']} epochs, batch {group[0]['batch_size']}) | "
            f"{group[0]['metric']} | {len(group)} | {statistics.mean(ours):.4f} ({worst(ours):.4f}) | "
            f"{statistics.mean(plain):.4f} ({worst(plain):.4f}) | {baseline} | "
            f"{statistics.median(r['trainwell_seconds'] for r in group):.0f} / {statistics.median(r['plain_seconds'] for r in group):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", metavar="DATA:MODEL", help="run only these cases")
    parser.add_argument("--mnist-dev", type=Path, default=Path("../shared/data/mnist-dev"), help="the dev MNIST folder")
    parser.add_argument("--log", type=Path, help="append one JSON line per run to this file")
    parser.add_argument("--summary", type=Path, help="print the table of a --log file and exit")
    args = parser.parse_args()
    if args.summary:
        print(summarize([json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]))
        return

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    wanted = {tuple(case.split(":")) for case in args.only} if args.only else None
    cases = [case for case in CASES if wanted is None or case[:2] in wanted]
    rows = []
    for data, model, options in cases:
        if data == MNIST_DEV and not args.mnist_dev.is_dir():
            print(f"# skipped {data}:{model}: no folder {args.mnist_dev} (pass --mnist-dev)", file=sys.stderr)
            continue
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_case(data, model, options, seed, args.mnist_dev)
            rows.append(row)
            print(f"# {data}:{model} seed {seed}: trainwell {row['trainwell']:.4f}, plain {row['plain']:.4f}, "
                  f"sklearn {row['sklearn']:.4f}", file=sys.stderr, flush=True)
            if args.log:
                with args.log.open("a") as log:
                    log.write(json.dumps(row) + "\n")
    print(f"torch {torch.__version__}, 1 thread")
    print(summarize(rows))


if __name__ == "__main__":
    main()
