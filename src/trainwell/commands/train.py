"""``trainwell train``: train the model a run config describes, and leave a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError

# Each flag that sets a RunConfig field: field -> (flag, argparse options). Flags left out of
# the command line do not override the config file or the defaults.
FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "data": ("--data", {"metavar": "NAME", "help": "bundled dataset: digits (default), iris, wine, breast_cancer"}),
    "epochs": ("--epochs", {"type": int, "metavar": "N", "help": "passes over the training data, 1..1000 (default 10)"}),
    "lr": ("--lr", {"type": float, "metavar": "LR", "help": "peak learning rate, 1e-6..1 (default 1e-2 with the one-cycle schedule)"}),
    "batch_size": (
        "--batch-size",
        {"type": int, "metavar": "N", "help": "training batch size (default 64); the lr is rescaled (sqrt rule) when it differs from 64"},
    ),
    "precision": ("--precision", {"metavar": "P", "help": "auto (default: bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, or fp16 (CUDA only)"}),
    "seed": ("--seed", {"type": int, "metavar": "N", "help": "random seed for the split, the weights and the order (default 0)"}),
    "device": ("--device", {"metavar": "D", "help": "auto (default), cpu, cuda, cuda:N or mps"}),
    "run_dir": ("--out", {"type": Path, "metavar": "RUN_DIR", "help": "the run directory to create (default runs/<timestamp>)"}),
    "checkpoint_every_steps": (
        "--checkpoint-every",
        {"type": int, "metavar": "STEPS", "help": "also checkpoint every STEPS optimizer steps (default: at the end of each epoch only)"},
    ),
}


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "train",
        help="train a model (default: an MLP on the bundled digits data)",
        description=(
            "Train a model and leave a run directory with config.yaml, metrics.jsonl and train.log. "
            "With no arguments: an MLP on scikit-learn's bundled handwritten digits, no download needed. "
            "Options come from the defaults, then --config FILE, then the flags."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of run options (flags override it)")
    for field, (flag, options) in FLAGS.items():
        parser.add_argument(flag, dest=field, **options)
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no info logs; print only the final table")
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run exactly where it stopped: 'auto' from the newest good checkpoint of --out (or from the "
        "start if it has none), PATH from that checkpoint or run directory; options come from the run's config.yaml, "
        "then --config, then the flags",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = resumed_options(args.resume, args.run_dir) if args.resume is not None else {}
    options.update(read_config_file(args.config) if args.config else {})
    flagged = {field: getattr(args, field) for field in FLAGS if getattr(args, field) is not None}
    options.update(flagged)
    if args.quiet:
        options["progress"] = False

    from trainwell.recipes import RunConfig, default_run_dir
    from trainwell.recipes import run as run_recipe

    if options.get("run_dir") is None:
        options["run_dir"] = default_run_dir()
    config = RunConfig.from_options(options, option_names={field: FLAGS[field][0] for field in flagged})
    if args.quiet:
        import logging

        logging.getLogger("trainwell").setLevel(logging.WARNING)
    from trainwell.exceptions import TrainingInterrupted

    try:
        result = run_recipe(config, resume=args.resume)
    except TrainingInterrupted as stopped:
        import signal
        import sys

        print(
            f"trainwell train: stopped by {signal.Signals(stopped.signal_number).name}; checkpoint {stopped.checkpoint} "
            f"is committed.\nResume with: trainwell train --resume auto --out {stopped.run_dir}",
            file=sys.stderr,
        )
        return 128 + stopped.signal_number
    print(format_summary(result))
    return 0


def resumed_options(resume: str, out: Path | None) -> dict[str, Any]:
    """The options of the run ``--resume`` continues (its config.yaml), with ``run_dir`` set to where it goes on."""
    if resume == "auto":
        if out is None:
            raise ConfigError("--resume auto needs --out RUN_DIR: the run directory to continue (e.g. --out runs/exp1).")
        run_dir = out
    else:
        path = Path(resume)
        if not path.exists():
            raise ConfigError(f"--resume '{path}' does not exist: expected 'auto', a checkpoint file or a run directory.")
        run_dir = run_directory_of(path)
    config_file = run_dir / "config.yaml"
    options = read_config_file(config_file) if config_file.is_file() else {}
    options["run_dir"] = out if out is not None else run_dir
    return options


def run_directory_of(path: Path) -> Path:
    """The run directory a checkpoint file or directory belongs to: ``runs/x`` for ``runs/x/checkpoints/step-9.pt``."""
    if path.is_file():
        path = path.parent
    return path.parent if path.name == "checkpoints" else path


def read_config_file(path: Path) -> dict[str, Any]:
    """The options in a YAML config file, or a ConfigError saying what is wrong with it."""
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
        raise ConfigError(f"--config '{path}' holds a {type(options).__name__}: expected a mapping of options, e.g. 'epochs: 20'.")
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
