"""The ``trainwell`` command: parses arguments and turns errors into clear exits.

    trainwell train                       # an MLP on the bundled digits data, in seconds
    trainwell train --config run.yaml     # any run; flags override the file
    trainwell lr-find                     # suggest a learning rate for a run
    trainwell plot / report / doctor RUN_DIR   # curves, report.html, diagnosis of a run

Each subcommand lives in ``trainwell/commands/<name>.py`` with a ``register(subcommands)``
function that adds its parser and sets ``handler``. Only argparse is imported up front:
``trainwell --help`` answers without loading torch.

Exit status: 0 on success; 2 with a one-line message for a bad flag value or an invalid option;
1 with the error's message when the run itself fails; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from trainwell.exceptions import ConfigError, TrainwellError
from trainwell.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The subcommands, in the order --help lists them; each is a module of trainwell.commands.
COMMANDS = ("train", "models", "lr-find", "plot", "report", "doctor", "bench", "eval", "predict", "export")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="trainwell", description="Train PyTorch models well: the best practices on by default.")
    parser.add_argument("--version", action="version", version=f"trainwell {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"trainwell.commands.{name.replace('-', '_')}").register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trainwell`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except ConfigError as error:
        _fail(f"trainwell {args.command}: error: {error}")
        return EXIT_USAGE
    except TrainwellError as error:
        _fail(f"trainwell {args.command}: failed: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail(f"trainwell {args.command}: interrupted")
        return EXIT_INTERRUPTED


def _fail(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
