"""``trainwell doctor RUN_DIR``: the usual training problems of a run, with evidence and fixes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "doctor",
        help="diagnose a run: non-finite loss, plateau, over- and underfitting, memory, batch size, target scale",
        description=(
            "Read RUN_DIR/metrics.jsonl and name the usual problems (non-finite loss, an early loss plateau, "
            "overfitting (a rising val_loss or a large generalisation gap), underfitting, out of memory, a large "
            "batch without lr scaling, regression targets far from unit scale, early stopping before the lr "
            "annealed) with the evidence and a concrete fix. Exit status 0 whatever it finds; 'No problems "
            "found.' for a healthy run."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory holding metrics.jsonl")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.observe.doctor import diagnose, format_findings

    print(format_findings(diagnose(args.run_dir)))
    return 0
