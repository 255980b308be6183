"""``trainwell lr-find``: run the LR range test on a run's model and data, and suggest an lr."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.commands.train import SECTIONS, layered_options, run_flags

# The train flags that describe the data, the model and the step; the rest (epochs, lr, the run
# directory) mean nothing to a range test.
_SHARED_TRAIN_FLAGS = ("batch_size", "precision", "seed", "device", "weight_decay", "optimizer", "momentum")


def _shared_flags() -> list[Any]:
    return [flag for flag in run_flags() if flag.group in ("data", "model") or flag.field in _SHARED_TRAIN_FLAGS]


def register(subcommands: Any) -> None:
    subcommands.add_parser(
        "lr-find",
        help="suggest a learning rate with the LR range test",
        description=(
            "Train the run's model for a few dozen steps while the learning rate rises exponentially, plot the "
            "loss against the lr, and print the suggested (peak) lr. The model is restored afterwards. "
            "'trainwell train --lr auto' does this before training."
        ),
        populate=_add_arguments,
    ).set_defaults(handler=run)


def _add_arguments(parser: Any) -> None:
    from trainwell.commands.flags import add_flags

    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of run options (flags override it)")
    parser.add_argument(
        "--start-lr", type=float, default=1e-7, metavar="LR", help="first lr of the sweep (default 1e-7)"
    )
    parser.add_argument("--end-lr", type=float, default=10.0, metavar="LR", help="last lr of the sweep (default 10)")
    parser.add_argument(
        "--steps", type=int, default=100, metavar="N", help="steps of the sweep, 10..10000 (default 100)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("lr_find.png"),
        metavar="FILE.png",
        help="the plot to write (default lr_find.png)",
    )
    add_flags(parser, _shared_flags(), SECTIONS)


def run(args: argparse.Namespace) -> int:
    options, names = layered_options(args, _shared_flags())
    options.pop("lr", None)
    options["progress"] = False

    from trainwell.recipes import RunConfig, find_recipe_lr

    config = RunConfig.from_options(options, option_names=names)
    result = find_recipe_lr(config, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps)
    path = result.plot(args.out)
    if result.suggested_lr is None:
        print(f"No suggestion: the loss never fell between lr {args.start_lr:g} and {args.end_lr:g}. Plot: {path}")
        return 1
    print(
        f"Suggested lr: {result.suggested_lr:.3g} (the smoothed loss was lowest at {result.min_loss_lr:.3g}). Plot: {path}"
    )
    print(f"Train with it: trainwell train --lr {result.suggested_lr:.3g}  (or: trainwell train --lr auto)")
    return 0
