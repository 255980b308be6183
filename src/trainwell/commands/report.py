"""``trainwell report RUN_DIR``: the run's self-contained report.html."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "report",
        help="write a run's self-contained report.html",
        description=(
            "Write RUN_DIR/report.html: the diagnosis, best and final metrics, learning curves, confusion "
            "matrix, events, system, configuration and model of a run, in one HTML file that opens offline."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory holding metrics.jsonl")
    parser.add_argument("--out", type=Path, metavar="FILE.html", help="where to write (default RUN_DIR/report.html)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.observe.report import write_report

    print(write_report(args.run_dir, args.out))
    return 0
