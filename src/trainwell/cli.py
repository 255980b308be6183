"""The ``trainwell`` command.

    trainwell train                       # an MLP on the bundled digits data, in seconds
    trainwell train --config run.yaml     # any run; flags override the file

Only argparse is imported up front: ``trainwell --help`` answers without loading torch.
Bad flag values and invalid options end with a one-line error naming the flag and exit
status 2; failures of the run itself end with the error's message and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainwell import __version__
from trainwell.exceptions import ConfigError, TrainwellError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Each flag of `trainwell train` and the RunConfig field it sets.
TRAIN_FLAGS = {
    "epochs": "--epochs",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "precision": "--precision",
    "seed": "--seed",
    "device": "--device",
    "data": "--data",
    "run_dir": "--out",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainwell",
        description="Train PyTorch models well: the best practices on by default.",
    )
    parser.add_argument("--version", action="version", version=f"trainwell {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="train a model (default: an MLP on the bundled digits data)",
        description=(
            "Train a model and leave a run directory with config.yaml, metrics.jsonl and train.log. "
            "With no arguments: an MLP on scikit-learn's bundled handwritten digits, no download needed. "
            "Options come from the defaults, then --config FILE, then the flags."
        ),
    )
    train.add_argument("--config", type=Path, metavar="FILE", help="YAML file of run options (flags override it)")
    train.add_argument("--data", metavar="NAME", help="bundled dataset: digits (default), iris, wine, breast_cancer")
    train.add_argument("--epochs", type=int, metavar="N", help="passes over the training data, 1..1000 (default 10)")
    train.add_argument("--lr", type=float, metavar="LR", help="peak learning rate, 1e-6..1 (default 1e-2 with the one-cycle schedule)")
    train.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="training batch size (default 64); the lr is rescaled (sqrt rule) when it differs from 64",
    )
    train.add_argument(
        "--precision",
        metavar="P",
        help="auto (default: bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, or fp16 (CUDA only)",
    )
    train.add_argument("--seed", type=int, metavar="N", help="random seed for the split, the weights and the order (default 0)")
    train.add_argument("--device", metavar="D", help="auto (default), cpu, cuda, cuda:N or mps")
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="the run directory to create (default runs/<timestamp>)")
    train.add_argument("--quiet", action="store_true", help="no progress bar and no info logs; print only the final table")
    train.set_defaults(handler=_train)
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
        return 130


def _train(args: argparse.Namespace) -> int:
    options = _read_config_file(args.config) if args.config else {}
    flagged = {field: getattr(args, flag.lstrip("-").replace("-", "_")) for field, flag in TRAIN_FLAGS.items()}
    flagged = {field: value for field, value in flagged.items() if value is not None}
    options.update(flagged)
    if args.quiet:
        options["progress"] = False
    options.setdefault("run_dir", None)
    names = {field: flag for field, flag in TRAIN_FLAGS.items() if field in flagged}

    from trainwell.recipes import RunConfig, default_run_dir, run

    if options["run_dir"] is None:
        options["run_dir"] = default_run_dir()
    config = RunConfig.from_options(options, option_names=names)
    if args.quiet:
        import logging

        logging.getLogger("trainwell").setLevel(logging.WARNING)
    result = run(config)
    print(format_summary(result))
    return EXIT_OK


def _read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config '{path}' does not exist or is not a file: give the path of a YAML file.")
    try:
        options = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"--config '{path}' is not valid YAML: {error}") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(
            f"--config '{path}' holds a {type(options).__name__}: expected a mapping of options, e.g. 'epochs: 20'."
        )
    return options


def format_summary(result: Any) -> str:
    """The final metrics as a small table: the best epoch and the last one."""
    metrics = ["train_loss", "val_loss", "val_accuracy", "val_mae", "epoch_time_s", "samples_per_s"]
    final, best = result.final, result.best or {}
    columns = [("best", best), ("final", final)] if best and best is not final else [("final", final)]
    metrics = [m for m in metrics if any(m in row for _, row in columns)]
    headers = [f"{label} (epoch {row.get('epoch')})" for label, row in columns]
    width = max(len(m) for m in metrics)
    lines = ["", " " * width + "".join(f"  {h:>18}" for h in headers)]
    for metric in metrics:
        cells = "".join(f"  {_cell(row.get(metric)):>18}" for _, row in columns)
        lines.append(f"{metric:<{width}}{cells}")
    if result.stopped_early:
        lines.append(f"Stopped early after epoch {final.get('epoch')}.")
    if result.run_dir is not None:
        lines.append(f"Run directory: {result.run_dir}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def _fail(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
