"""``trainwell lr-find``: run the LR range test on a run's model and data, and suggest an lr."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.commands.train import FLAGS, read_config_file

# The train flags that describe the model, the data and the step; the rest (epochs, lr, the
# run directory) mean nothing to a range test.
_SHARED_FLAGS = ("data", "batch_size", "precision", "seed", "device")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "lr-find",
        help="suggest a learning rate with the LR range test",
        description=(
            "Train the run's model for a few dozen steps while the learning rate rises exponentially, plot the "
            "loss against the lr, and print the suggested (peak) lr. The model is restored afterwards. "
            "'trainwell train --lr auto' does this before training."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of run options (flags override it)")
    for field in _SHARED_FLAGS:
        flag, options = FLAGS[field]
        parser.add_argument(flag, dest=field, **options)
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = read_config_file(args.config) if args.config else {}
    flagged = {field: getattr(args, field) for field in _SHARED_FLAGS if getattr(args, field) is not None}
    options.update(flagged)
    options.pop("lr", None)
    options["progress"] = False

    from trainwell.recipes import RunConfig, find_recipe_lr

    config = RunConfig.from_options(options, option_names={field: FLAGS[field][0] for field in flagged})
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
