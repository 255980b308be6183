"""``trainwell plot RUN_DIR [RUN_DIR ...]``: learning curves of one run, or several overlaid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "plot",
        help="draw learning curves; several runs are overlaid for comparison",
        description=(
            "Draw the learning curves (train and validation loss, the validation metric, the learning rate) "
            "of one or more run directories into a PNG. One run: RUN_DIR/curves.png; several: curves.png "
            "in the current directory, one colour per run."
        ),
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding metrics.jsonl"
    )
    parser.add_argument("--out", type=Path, metavar="FILE.png", help="the PNG to write (default: see above)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.observe.curves import plot_runs

    print(plot_runs(args.run_dirs, args.out))
    return 0
