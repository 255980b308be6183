"""``trainwell export RUN_DIR --format F``: a run's best model as safetensors weights, or a TorchScript or ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.commands.options import add_checkpoint_option

FORMATS = ("safetensors", "torchscript", "onnx")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "export",
        help="export a run's best model: safetensors weights, or a TorchScript or ONNX graph (checked against the model)",
        description=(
            "Export the model of RUN_DIR (its best checkpoint by the run's monitor, val_loss by default). "
            "safetensors: the weights, reloaded into a newly built model to check they give identical outputs (needs "
            "trainwell[safetensors]). torchscript and onnx (needs trainwell[onnx]): the computation as a graph, run "
            "on sample inputs of two batch sizes and compared with the model within the tolerance before the file is "
            "put in place. The exported model takes prepared inputs; RUN_DIR/data.json holds the preprocessing."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by trainwell train")
    parser.add_argument("--format", required=True, choices=FORMATS, help="safetensors, torchscript or onnx")
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write (default RUN_DIR/model.safetensors, model.torchscript.pt or model.onnx)",
    )
    add_checkpoint_option(parser)
    parser.add_argument(
        "--atol", type=float, default=1e-4, metavar="X", help="absolute tolerance of the graph check (default 1e-4)"
    )
    parser.add_argument(
        "--rtol", type=float, default=1e-4, metavar="X", help="relative tolerance of the graph check (default 1e-4)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.exceptions import ConfigError
    from trainwell.use.export import export_run

    for flag, value in (("--atol", args.atol), ("--rtol", args.rtol)):
        if not value >= 0:
            raise ConfigError(f"{flag}={value} is out of range: expected a number ≥ 0.")
    check = export_run(args.run_dir, args.format, args.output, args.checkpoint, atol=args.atol, rtol=args.rtol)
    how = "" if check.method == "weights" else f" ({check.method})"
    print(
        f"Exported {args.format}{how} to {check.path}: checked on {check.samples} sample inputs, largest difference "
        f"from the model {check.max_abs_diff:.3g}."
    )
    return 0
