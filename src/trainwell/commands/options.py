"""Command-line options that several subcommands share, defined once so that they read and check alike."""

from __future__ import annotations

import argparse
from typing import Any


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: an integer ≥ 1, refused at parse time with the value and the fix.

    Example:
        >>> positive_int("32")
        32
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 0 is out of range: expected an integer ≥ 1
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer: expected an integer ≥ 1, e.g. 64") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: expected an integer ≥ 1")
    return value


def add_checkpoint_option(parser: Any) -> None:
    """``--checkpoint best|last|PATH``: which weights of a run a command uses."""
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH", help="which weights (default best)")


def add_device_option(parser: Any) -> None:
    """``--device``: where a command runs the model."""
    parser.add_argument("--device", default="auto", metavar="D", help="auto (default), cpu, cuda, cuda:N or mps")


def add_inference_options(parser: Any) -> None:
    """The options of commands that run a trained run's model: ``--checkpoint``, ``--batch-size``, ``--device``."""
    add_checkpoint_option(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, metavar="N", help="samples per forward pass (default 256)"
    )
    add_device_option(parser)
