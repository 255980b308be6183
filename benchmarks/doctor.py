"""What the doctor says about real runs: healthy recipes and runs broken on purpose.

Each run trains the CLI recipe (MLP, one-cycle at lr 1e-2, batch 64, early stopping) on a
bundled dataset with some options changed, then :func:`trainwell.observe.doctor.diagnose` reads its
run directory. The default digits run over several seeds must get no finding.

    python benchmarks/doctor.py             # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from trainwell.observe.doctor import diagnose
from trainwell.recipes import RunConfig, run

CASES = {
    **{f"digits, default recipe, seed {seed}": {"seed": seed} for seed in range(5)},
    "wine, default recipe": {"data": "wine"},
    "breast_cancer, default recipe": {"data": "breast_cancer"},
    "iris, default recipe": {"data": "iris"},
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
    "digits, batch 1024 without lr scaling": {
        "batch_size": 1024,
        "reference_batch_size": None,
        "lr": 1e-3,
        "schedule": "constant",
    },
}


def main() -> None:
    logging.getLogger("trainwell").setLevel(logging.CRITICAL)
    print("| run | findings |\n|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for index, (name, options) in enumerate(CASES.items()):
            run_dir = Path(root) / str(index)
            run(RunConfig(run_dir=run_dir, progress=False, **options))
            findings = diagnose(run_dir)
            print(f"| {name} | {', '.join(finding.rule for finding in findings) or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
