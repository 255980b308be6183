"""Does stochastic weight averaging help trainwell's recipes? The measurement behind not building it.

    python benchmarks/swa.py                    # seeds 0-4, every case (a few minutes)
    python benchmarks/swa.py --start 0.5 --only breast_cancer:mlp

SWA as Lightning's ``StochasticWeightAveraging`` callback does it, without its own lr schedule:
from ``--start`` of the epochs on (0.8 by default, Lightning's ``swa_epoch_start``), the weights at
the end of each epoch are averaged with equal weights (``torch.optim.swa_utils.AveragedModel``),
and at the end BatchNorm's statistics are recomputed for the average over the training data
(``update_bn``). Each case runs with and without it, on the same seed; ``DATA:MODEL`` is
``trainwell train``'s recipe (one-cycle), ``fit:DATA:MODEL`` is ``trainwell.fit`` with its defaults
(constant lr, batches of 64). Scored by validation accuracy (MAE for diabetes). Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from typing import Any

CASES = ["digits:mlp", "iris:mlp", "wine:mlp", "breast_cancer:mlp", "diabetes:mlp", "fit:digits:mlp", "fit:breast_cancer:mlp"]


def swa_callback(start: float) -> Any:
    import math

    import torch

    from trainwell.callbacks import Callback

    class StochasticWeightAveraging(Callback):
        def __init__(self) -> None:
            self.average: Any = None
            self.train_loader: Any = None

        def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
            if epoch < math.ceil(start * trainer.config.epochs):
                return
            if self.average is None:
                self.average = torch.optim.swa_utils.AveragedModel(trainer.module)
            self.average.update_parameters(trainer.module)

        def on_train_end(self, trainer: Any, **kwargs: Any) -> None:
            if self.average is None:
                return
            torch.optim.swa_utils.update_bn(((inputs,) for inputs, _ in self.train_loader), self.average)
            trainer.module.load_state_dict(self.average.module.state_dict())

    return StochasticWeightAveraging()


def run(case: str, seed: int, swa: bool, start: float) -> float:
    import trainwell
    from trainwell.data.targets import target_scaling_of
    from trainwell.recipes import RunConfig, build_data, build_model
    from trainwell.system import seed_everything

    with_fit = case.startswith("fit:")
    data, model = case.removeprefix("fit:").split(":")
    config = RunConfig(data=data, model=model, seed=seed, progress=False, restore_best_weights=not swa)
    splits = build_data(config)
    # In the order recipes.run draws them (the validation loader takes a seed from torch's RNG
    # before the model's initial weights), so the runs without SWA are the recipe's own.
    seed_everything(seed)
    batch = 64 if with_fit else config.batch_size
    train_loader, val_loader = splits.loaders(batch, seed=seed)
    network = build_model(config, splits.info)
    callbacks = [swa_callback(start)] if swa else []
    if callbacks:
        callbacks[0].train_loader = train_loader
    # SWA's average is the model that is kept, so the best epoch is not restored over it.
    options = {"restore_best_weights": not swa}
    if with_fit:
        trainwell.fit(network, train_loader, val_loader, epochs=config.epochs, seed=seed, callbacks=callbacks, progress=False, **options)
    else:
        trainwell.Trainer(config.replace(**options), callbacks=callbacks).fit(network, train_loader, val_loader)
    measured = trainwell.evaluate(network, [splits.val], target_scaling=target_scaling_of(splits.info))
    return measured.metrics.get("accuracy", measured.metrics.get("mae"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--start", type=float, default=0.8)
    parser.add_argument("--only", nargs="*", default=CASES)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    print(f"SWA from {args.start:.0%} of the epochs, seeds 0-{args.seeds - 1}, torch threads 1")
    print("| case | metric | without SWA: mean (each seed) | with SWA: mean (each seed) |")
    print("|---|---|---|---|")
    for case in args.only:
        plain = [run(case, seed, False, args.start) for seed in range(args.seeds)]
        averaged = [run(case, seed, True, args.start) for seed in range(args.seeds)]
        metric = "MAE" if "diabetes" in case else "accuracy"
        print(
            f"| `{case}` | {metric} | {statistics.mean(plain):.4f} ({' '.join(f'{v:.4f}' for v in plain)}) | "
            f"{statistics.mean(averaged):.4f} ({' '.join(f'{v:.4f}' for v in averaged)}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
