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
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from trainwell.exceptions import ConfigError, TrainwellError
from trainwell.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The subcommands, in the order --help lists them; each is a module of trainwell.commands.
COMMANDS = ("train", "models", "lr-find", "plot", "report", "doctor", "bench", "eval", "predict", "export")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, suggest a close match, and exit with status 2.

    Abbreviated flags are refused (``--epo`` for ``--epochs``): with a flag per option, a prefix
    that is unique today may not be once an option is added. ``populate(parser)`` adds the
    arguments when the parser is first used, so that a command whose flags are generated from its
    config costs nothing to the others.
    """

    def __init__(self, *args: Any, populate: Callable[[Any], None] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._populate = populate

    def populated(self) -> Parser:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)
        return self

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return super(Parser, self.populated()).parse_known_args(args, namespace)

    def format_help(self) -> str:
        return super(Parser, self.populated()).format_help()

    def format_usage(self) -> str:
        return super(Parser, self.populated()).format_usage()

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += _did_you_mean(choice.group(1), re.findall(r"'?([\w-]+)'?", choice.group(2)))
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def unrecognized(self, extras: list[str]) -> None:
        """Refuse arguments this (sub)command does not know, suggesting the closest of its flags."""
        flags = [option for action in self._actions for option in action.option_strings]
        unknown = [extra for extra in extras if extra.startswith("-")] or extras
        hint = _did_you_mean(unknown[0].split("=", 1)[0], flags) if unknown[0].startswith("-") else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="trainwell", description="Train PyTorch models well: the best practices on by default.")
    parser.add_argument("--version", action="version", version=f"trainwell {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"trainwell.commands.{name.replace('-', '_')}").register(subcommands)
    parser.subcommands = subcommands.choices
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trainwell`` command; return its exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        if extras:
            parser.unrecognized(extras)
        parser.print_help()
        return EXIT_USAGE
    if extras:
        # argparse leaves a subcommand's unknown flags to the top parser, whose message would say
        # "trainwell: error"; the subcommand's own parser names it and suggests its flags.
        _innermost(parser, args).unrecognized(extras)
    try:
        return args.handler(args)
    except ConfigError as error:
        _fail(f"trainwell {args.command}: error: {error}")
        return EXIT_USAGE
    except TrainwellError as error:
        _fail(f"trainwell {args.command}: failed: {error}")
        return EXIT_FAILED
    except OSError as error:
        # A file no check named (a read-only or full disk under a path trainwell did not expect): one line still.
        from trainwell.files.storage import describe_os_error

        _fail(f"trainwell {args.command}: failed: {describe_os_error(error)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail(f"trainwell {args.command}: interrupted")
        return EXIT_INTERRUPTED


def _innermost(parser: Any, args: argparse.Namespace) -> Parser:
    """The parser of the (sub-sub)command ``args`` were parsed for, e.g. ``trainwell bench precision``."""
    chosen = parser.subcommands[args.command]
    for action in chosen._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return action.choices[name]
    return chosen


def _fail(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
