"""What the doctor says about real runs: healthy recipes and runs broken on purpose.

Each run trains the CLI recipe (MLP, one-cycle at lr 1e-2, batch 64, early stopping) on a
bundled dataset with some options changed, then :func:`trainwell.observe.doctor.diagnose` reads its
run directory. The default digits run over several seeds must get no finding.

    python benchmarks/doctor.py             # about 3 minutes on 2 CPU cores, torch on one thread
    python benchmarks/doctor.py --mnist-dir DIR   # also two runs on a folder of MNIST IDX files
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

from trainwell.display import number
from trainwell.observe.doctor import diagnose
from trainwell.observe.records import read_run
from trainwell.recipes import RunConfig, run

CASES = {
    **{f"digits, default recipe, seed {seed}": {"seed": seed} for seed in range(5)},
    "wine, default recipe": {"data": "wine"},
    "breast_cancer, default recipe": {"data": "breast_cancer"},
    "iris, default recipe": {"data": "iris"},
    "diabetes (regression), default recipe": {"data": "diabetes"},
    "digits, lr 1e-5 constant": {"lr": 1e-5, "schedule": "constant"},
    "digits, lr 1e-4 constant": {"lr": 1e-4, "schedule": "constant"},
    "digits, hidden [4], dropout 0.5": {"model_args": {"hidden": [4], "dropout": 0.5}},
    "digits, lr 1.0 constant": {"lr": 1.0, "schedule": "constant"},
    "breast_cancer, 2x512 no regularisation, no early stopping, 30 epochs": {
        "data": "breast_cancer",
        "model_args": {"hidden": [512, 512], "dropout": 0.0},
        "weight_decay": 0.0,
        "schedule": "constant",
        "lr": 3e-3,
        "epochs": 30,
        "early_stopping_patience": None,
    },
    **{
        f"digits, 64-512-512-10 without dropout on 180 images (val_fraction 0.9), seed {seed}": {
            "val_fraction": 0.9,
            "model_args": {"hidden": [512, 512], "dropout": 0.0},
            "seed": seed,
        }
        for seed in range(3)
    },
    "digits, batch 1024 without lr scaling": {
        "batch_size": 1024,
        "reference_batch_size": None,
        "lr": 1e-3,
        "schedule": "constant",
    },
}


def mnist_cases(folder: str) -> dict[str, dict]:
    """Runs on a folder of real MNIST files (4,000 training images): the default recipe, and the
    784-512-512-10 MLP without dropout on 300 of them that memorises its training set."""
    return {
        "mnist (4,000 images), default recipe": {"data": folder},
        "mnist, 784-512-512-10 without dropout on 300 images": {
            "data": folder,
            "val_fraction": 0.925,
            "model_args": {"hidden": [512, 512], "dropout": 0.0},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-dir", help="a folder of MNIST IDX files: adds the runs on real MNIST images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.CRITICAL)
    cases = {**CASES, **(mnist_cases(args.mnist_dir) if args.mnist_dir else {})}
    print("| run | findings | final train_loss / val_loss / val_accuracy |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for index, (name, options) in enumerate(cases.items()):
            run_dir = Path(root) / str(index)
            run(RunConfig(run_dir=run_dir, progress=False, **options))
            findings = diagnose(run_dir)
            final = read_run(run_dir).epochs[-1]
            losses = " / ".join(number(final.get(key)) for key in ("train_loss", "val_loss", "val_accuracy"))
            print(f"| {name} | {', '.join(finding.rule for finding in findings) or 'none'} | {losses} |", flush=True)


if __name__ == "__main__":
    main()
