"""How the diabetes recipe was chosen: a few MLP recipes against scikit-learn's Ridge, MAE in disease-progression units.

    python benchmarks/diabetes_recipe.py                   # seeds 0-4, every candidate
    python benchmarks/diabetes_recipe.py --first-seed 5 --only default small-table

Each run is ``trainwell train --data diabetes`` with the candidate's options (targets standardised
with the training split's statistics, as trainwell does), scored as the model it returns; Ridge
(alpha chosen by cross-validation on the training split) sees the same split. The candidates were
compared on seeds 0-4; seeds 5-9 check the choice on splits it was not made on. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import logging
import statistics

# Options given in full: the recipe chosen now fills whatever a candidate leaves out.
WIDE = {"hidden": [256, 128], "dropout": 0.3}
CANDIDATES = {
    "default": {"batch_size": 64, "epochs": 10, "model_args": WIDE},
    "batch-16": {"batch_size": 16, "epochs": 30, "model_args": WIDE},
    "small-table": {"batch_size": 16, "epochs": 30, "model_args": {"hidden": [64], "dropout": 0.3}},
    "small-table-60": {"batch_size": 16, "epochs": 60, "model_args": {"hidden": [64], "dropout": 0.3}},
    "small-table-lr3e-3": {"batch_size": 16, "epochs": 30, "lr": 3e-3, "model_args": {"hidden": [64], "dropout": 0.3}},
    "tiny": {"batch_size": 32, "epochs": 30, "model_args": {"hidden": [32], "dropout": 0.2}},
}


def ridge(seed: int) -> float:
    import numpy as np
    from sklearn.linear_model import RidgeCV

    from trainwell.data import load_bundled

    splits = load_bundled("diabetes", seed=seed)
    mean, std = splits.info.target_scaling["mean"][0], splits.info.target_scaling["std"][0]
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(splits.train[0].numpy(), splits.train[1].numpy())
    predicted = model.predict(splits.val[0].numpy()) * std + mean
    return float(np.abs(predicted - (splits.val[1].numpy() * std + mean)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES))
    args = parser.parse_args()

    import torch

    from trainwell.recipes import RunConfig, run

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"diabetes, seeds {seeds.start}-{seeds.stop - 1}, val MAE (disease progression), torch threads 1")
    print("| recipe | options | per seed | mean |")
    print("|---|---|---|---:|")
    baseline = [ridge(seed) for seed in seeds]
    print(f"| Ridge (alpha by CV) | | {' '.join(f'{v:.1f}' for v in baseline)} | {statistics.mean(baseline):.2f} |", flush=True)
    for name in args.only:
        options = {"data": "diabetes", "progress": False, **CANDIDATES[name]}
        scores = [run(RunConfig(seed=seed, **options)).best["val_mae"] for seed in seeds]
        print(f"| {name} | {CANDIDATES[name]} | {' '.join(f'{v:.1f}' for v in scores)} | {statistics.mean(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()
