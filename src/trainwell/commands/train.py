"""``trainwell train``: train the model a run config describes, and leave a run directory."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError

# Flag names kept from before the flags were generated (each field also has its --field-name).
ALIASES = {
    "run_dir": ("--out",),
    "loggers": ("--log",),
    "model_args": ("--model-arg",),
    "checkpoint_every_steps": ("--checkpoint-every",),
}
# What the command line accepts beyond the field's type.
EXTRA_HELP = {
    "lr": "or auto: the LR finder picks it and its plot is saved as lr_find.png in the run directory",
    "run_dir": "default runs/<timestamp>",
    "model_args": "repeatable, e.g. --model-arg channels=32,64 (ints, floats, true/false, none, comma lists); "
    "'trainwell models' lists each model's arguments",
}
METAVARS = {"lr": "FLOAT|auto", "run_dir": "DIR", "data": "NAME|PATH", "device": "DEVICE"}
SECTIONS = {
    "data": "data (what to read; a config file's data: section)",
    "model": "model (what to build; model:)",
    "train": "training (how to train; train:)",
}


def run_flags() -> list[Any]:
    """The flags of every RunConfig option, generated from its fields (commands/flags.py)."""
    from trainwell.commands.flags import field_flags
    from trainwell.recipes import RunConfig, option_group

    return field_flags(RunConfig, option_group, ALIASES, EXTRA_HELP, METAVARS)


def register(subcommands: Any) -> None:
    subcommands.add_parser(
        "train",
        help="train a model (default: an MLP on the bundled digits data)",
        description=(
            "Train a model and leave a run directory with config.yaml, metrics.jsonl, train.log, curves.png and "
            "report.html (the doctor's diagnosis is logged at the end). "
            "With no arguments: an MLP on scikit-learn's bundled handwritten digits, no download needed. "
            "Options come from the defaults, then --config FILE, then the flags; every option has a flag."
        ),
        usage="%(prog)s [--config FILE] [--print-config] [--quiet] [--resume auto|PATH] [--OPTION VALUE ...]",
        populate=add_arguments,
    ).set_defaults(handler=run)


def add_arguments(parser: Any) -> None:
    """The train command's own options, then a flag per RunConfig option (generated when first needed)."""
    from trainwell.commands.flags import add_flags

    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML file of run options, flat or in data:, model: and train: sections (flags override it)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved options as a YAML config file (in sections) and exit; --config reads it back",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no info lines on the console (train.log keeps them)"
    )
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run exactly where it stopped: 'auto' from the newest good checkpoint of --out (or from the "
        "start if it has none), PATH from that checkpoint or run directory; options come from the run's config.yaml, "
        "then --config, then the flags",
    )
    add_flags(parser, run_flags(), SECTIONS)


def given_options(args: argparse.Namespace, flags: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The options set by flags (a flag left out sets nothing), and each one's flag name for messages."""
    given = {flag.field: getattr(args, flag.field) for flag in flags if hasattr(args, flag.field)}
    return given, {flag.field: flag.name for flag in flags if flag.field in given}


def layered_options(
    args: argparse.Namespace, flags: list[Any], options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``options``, then the ``--config`` file's, then the flags'; each ``--model-arg`` overrides only that
    argument of the model_args before it. Also each option's flag name, for messages.

    Raises:
        ConfigError: the config file is missing, not YAML, or holds a key that is not an option.
    """
    options = {**(options or {}), **(read_config_file(args.config) if args.config else {})}
    flagged, names = given_options(args, flags)
    if "model_args" in flagged:
        before = options.get("model_args")
        flagged["model_args"] = {**(before if isinstance(before, dict) else {}), **flagged["model_args"]}
    return {**options, **flagged}, names


def run(args: argparse.Namespace) -> int:
    resumed = resumed_options(args.resume, getattr(args, "run_dir", None)) if args.resume is not None else {}
    flags = run_flags()
    options, names = layered_options(args, flags, resumed)

    from trainwell.recipes import RunConfig, default_run_dir
    from trainwell.recipes import run as run_recipe

    auto_lr = options.get("lr") == "auto"
    if auto_lr:
        del options["lr"]
    if args.print_config:
        config = RunConfig.from_options(options, option_names=names)
        print(grouped_yaml(config, [flag.field for flag in flags], auto_lr), end="")
        return 0
    if options.get("run_dir") is None:
        options["run_dir"] = default_run_dir()
    if args.quiet:
        options["progress"] = False
    config = RunConfig.from_options(options, option_names=names)
    from trainwell.exceptions import TrainingInterrupted
    from trainwell.observe.logs import setup_console_logging
    from trainwell.system import is_primary_process

    # From the first line: what the data loader finds reaches the console and train.log.
    setup_console_logging(logging.WARNING if args.quiet else logging.INFO)
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


def grouped_yaml(config: Any, fields: list[str], auto_lr: bool = False) -> str:
    """The resolved options a command line can set, as YAML in data:, model: and train: sections."""
    import yaml

    from trainwell.recipes import option_group

    resolved = config.to_yaml_dict()
    if auto_lr:
        resolved["lr"] = "auto"
    sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for name in fields:
        sections[option_group(name)][name] = resolved[name]
    return yaml.safe_dump(sections, sort_keys=False)


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
    """The options in a YAML config file, flat or in ``data:``, ``model:`` and ``train:`` sections.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is not an option (of its section),
            with a "did you mean" and the options of that section.
    """
    from trainwell.files.reading import read_yaml

    if not path.is_file():
        raise ConfigError(f"--config '{path}' does not exist or is not a file: give the path of a YAML file.")
    options = read_yaml(path, ConfigError, "--config")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"--config '{path}' holds a {type(options).__name__}: expected a mapping of options, e.g. 'epochs: 20'.")
    return ungrouped(options, f"--config '{path}'")


def ungrouped(options: dict[str, Any], source: str) -> dict[str, Any]:
    """The options of a config file with its ``data:``/``model:``/``train:`` sections merged into one mapping.

    A section is a key named after one whose value is a mapping (``data: digits`` is the data
    option, ``data: {target: price}`` the data section). Keys outside sections are taken as they
    are (a flat file, as config.yaml is). Every key must name an option: checked here, so that the
    message names the file (RunConfig checks the values later).

    Raises:
        ConfigError: a key is not an option (naming the file, a close match, else the sections),
            or a section holds a key that is not one of its options (naming the section, a close
            match and the section's options, only those), or an option sits in another's section.
    """
    import difflib

    from trainwell.recipes import RunConfig, option_group

    sections: dict[str, list[str]] = {"data": [], "model": [], "train": []}
    for name in RunConfig.model_fields:
        sections[option_group(name)].append(name)
    flat: dict[str, Any] = {}
    problems = []
    for key, value in options.items():
        if key not in sections or not isinstance(value, dict):
            if key not in RunConfig.model_fields:
                close = difflib.get_close_matches(str(key), list(RunConfig.model_fields), n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else " The sections are data:, model: and train:"
                problems.append(
                    f"{source}: {key!r} is not an option.{hint} (trainwell train --print-config shows every option.)"
                )
            flat[key] = value
            continue
        for name, option in value.items():
            if name in sections[key]:
                flat[name] = option
                continue
            home = option_group(name) if name in RunConfig.model_fields else None
            if home is not None:
                problems.append(f"{source}: {name!r} is an option of the {home}: section, not {key}: move it there.")
                continue
            close = difflib.get_close_matches(str(name), sections[key], n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"{source}: {name!r} is not an option of the {key}: section.{hint} "
                f"The {key}: options are: {', '.join(sections[key])}."
            )
    if problems:
        raise ConfigError("\n".join(problems))
    return flat


def format_summary(result: Any) -> str:
    """The final metrics as a small table: the best epoch and the last one."""
    from trainwell.display import number, seconds

    metrics = ["train_loss", "val_loss", "val_accuracy", "val_mae", "epoch_time_s", "samples_per_s"]
    final, best = result.final, result.best or {}
    columns = [("best", best), ("final", final)] if best and best is not final else [("final", final)]
    metrics = [m for m in metrics if any(m in row for _, row in columns)]
    headers = [f"{label} (epoch {row.get('epoch')})" for label, row in columns]
    width = max(len(m) for m in metrics)
    lines = ["", " " * width + "".join(f"  {h:>18}" for h in headers)]
    for metric in metrics:
        show = seconds if metric == "epoch_time_s" else (lambda v: number(round(v))) if metric == "samples_per_s" else number
        cells = "".join(f"  {(show(row[metric]) if row.get(metric) is not None else '-'):>18}" for _, row in columns)
        lines.append(f"{metric:<{width}}{cells}")
    if result.stopped_early:
        lines.append(f"Stopped early after epoch {final.get('epoch')}.")
    if result.run_dir is not None:
        lines.append(f"Run directory: {result.run_dir}")
    return "\n".join(lines)
