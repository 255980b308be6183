"""``trainwell models``: every model of the registry with its arguments."""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "models",
        help="list the models and their arguments",
        description=(
            "List the models 'trainwell train --model NAME' builds, with their arguments "
            "(set with --model-arg KEY=VALUE) and the kinds of data each takes. Sizes marked "
            "'from the data' are read from the dataset."
        ),
    )
    parser.add_argument("name", nargs="?", help="show only this model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.models.registry import describe

    print(describe(args.name))
    return 0
