"""``trainwell train``: train the model a run config describes, and leave a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError


def lr_or_auto(text: str) -> float | str:
    """``--lr``'s value: a number, or ``auto`` for the LR finder's suggestion."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number from 1e-6 to 1, or auto") from None


# Each flag that sets a RunConfig field: field -> (flag, argparse options). Flags left out of
# the command line do not override the config file or the defaults.
FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "data": (
        "--data",
        {
            "metavar": "NAME|PATH",
            "help": "digits (default), iris, wine, breast_cancer, sunspots, word_language, mnist, fashion-mnist, "
            "a .csv/.tsv/.parquet table (with --target), a .jsonl of texts, or a folder of class folders of images",
        },
    ),
    "data_dir": ("--data-dir", {"type": Path, "metavar": "DIR", "help": "directory of the mnist/fashion-mnist IDX files (downloaded into it when absent)"}),
    "data_format": ("--data-format", {"metavar": "F", "help": "auto (default), bundled, idx, tabular, images or text (e.g. text for a .csv of texts)"}),
    "target": ("--target", {"metavar": "COLUMN", "help": "the column to predict in a table, or the label column of a text file (default label)"}),
    "task": ("--task", {"metavar": "T", "help": "auto (default: inferred from the target), classification or regression"}),
    "missing": ("--missing", {"metavar": "POLICY", "help": "missing values in a table: impute (default), drop or error"}),
    "image_size": ("--image-size", {"type": int, "metavar": "N", "help": "resize images to NxN (default: the first image's size)"}),
    "augment": ("--augment", {"action": "store_true", "default": None, "help": "random crop and flip of training images"}),
    "bad_images": ("--bad-images", {"metavar": "POLICY", "help": "an image that fails to decode: error (default) or skip"}),
    "text_column": ("--text-column", {"metavar": "COLUMN", "help": "the column holding the text of a text file (default text)"}),
    "max_length": ("--max-length", {"type": int, "metavar": "N", "help": "tokens kept per text (default: the longest training text, at most 256)"}),
    "download": ("--no-download", {"action": "store_false", "default": None, "help": "never download: missing mnist/fashion-mnist files are an error"}),
    "model": (
        "--model",
        {
            "metavar": "NAME",
            "help": "mlp (default), cnn, lstm, gru, rnn or transformer; 'trainwell models' lists their arguments "
            "(default for sunspots and word_language: lstm)",
        },
    ),
    "model_args": (
        "--model-arg",
        {
            "action": "append",
            "type": lambda text: parse_model_arg(text),  # defined below
            "metavar": "KEY=VALUE",
            "help": "a model argument, repeatable, e.g. --model-arg channels=32,64 (ints, floats, true/false, comma lists)",
        },
    ),
    "epochs": ("--epochs", {"type": int, "metavar": "N", "help": "passes over the training data, 1..1000 (default 10)"}),
    "lr": (
        "--lr",
        {"type": lr_or_auto, "metavar": "LR", "help": "peak learning rate, 1e-6..1 (default 1e-2 with the one-cycle schedule), or auto: the LR finder picks it"},
    ),
    "batch_size": (
        "--batch-size",
        {"type": int, "metavar": "N", "help": "training batch size (default 64); the lr is rescaled (sqrt rule) when it differs from 64"},
    ),
    "precision": ("--precision", {"metavar": "P", "help": "auto (default: bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, or fp16 (CUDA only)"}),
    "compile": ("--compile", {"action": "store_true", "default": None, "help": "compile the model with torch.compile (compilation time reported apart)"}),
    "seed": ("--seed", {"type": int, "metavar": "N", "help": "random seed for the split, the weights and the order (default 0)"}),
    "device": ("--device", {"metavar": "D", "help": "auto (default), cpu, cuda, cuda:N or mps"}),
    "loggers": ("--log", {"nargs": "+", "choices": ("csv", "tensorboard"), "metavar": "LOGGER", "help": "extra loggers into the run directory: csv, tensorboard (needs trainwell[tensorboard])"}),
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
            "Train a model and leave a run directory with config.yaml, metrics.jsonl, train.log, curves.png and "
            "report.html (the doctor's diagnosis is logged at the end). "
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
    if "model_args" in flagged:
        # Each --model-arg overrides that one argument of the file's model_args.
        from_file = options.get("model_args")
        flagged["model_args"] = {**(from_file if isinstance(from_file, dict) else {}), **dict(flagged["model_args"])}
    options.update(flagged)
    if args.quiet:
        options["progress"] = False

    from trainwell.recipes import RunConfig, default_run_dir
    from trainwell.recipes import run as run_recipe

    if options.get("run_dir") is None:
        options["run_dir"] = default_run_dir()
    auto_lr = options.get("lr") == "auto"
    if auto_lr:
        del options["lr"]
    config = RunConfig.from_options(options, option_names={field: FLAGS[field][0] for field in flagged})
    if args.quiet:
        import logging

        logging.getLogger("trainwell").setLevel(logging.WARNING)
    from trainwell.exceptions import TrainingInterrupted
    from trainwell.system import is_primary_process

    try:
        result = run_recipe(config, auto_lr=auto_lr, resume=args.resume)
    except TrainingInterrupted as stopped:
        import signal
        import sys

        # Under torchrun every process stops; rank 0 alone says so.
        if is_primary_process():
            print(
                f"trainwell train: stopped by {signal.Signals(stopped.signal_number).name}; checkpoint {stopped.checkpoint} "
                f"is committed.\nResume with: trainwell train --resume auto --out {stopped.run_dir}",
                file=sys.stderr,
            )
        return 128 + stopped.signal_number
    if is_primary_process():
        print(format_summary(result))
    return 0


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``"channels=32,64"`` -> ``("channels", [32, 64])``: ints, floats, true/false, none, comma lists, else text.

    Raises:
        argparse.ArgumentTypeError: the text is not ``KEY=VALUE``.

    Example:
        >>> parse_model_arg("channels=32,64"), parse_model_arg("dropout=0.1"), parse_model_arg("cell=gru")
        (('channels', [32, 64]), ('dropout', 0.1), ('cell', 'gru'))
    """
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE: write e.g. --model-arg channels=32,64")
    if "," in value:
        return key, [_parse_value(item) for item in value.split(",") if item.strip()]
    return key, _parse_value(value)


def _parse_value(text: str) -> Any:
    text = text.strip()
    named = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in named:
        return named[text.lower()]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


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
