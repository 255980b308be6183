"""``trainwell predict RUN_DIR --input FILE``: predictions of a run's best model on new data, as CSV or JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trainwell.commands.options import add_inference_options


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "predict",
        help="predict with a run's best model on new data (CSV rows, images, IDX, texts)",
        description=(
            "Run the model of RUN_DIR (its best checkpoint by the run's monitor, val_loss by default) on --input, "
            "prepared exactly as the training data was (the normalisation statistics, categories, image size, "
            "vocabulary saved in RUN_DIR/data.json), and write one prediction per sample: the class and each class's "
            "probability, or the value. Input that does not match the training data (a missing column, IDX images of "
            "another size, another format) is refused."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by trainwell train")
    parser.add_argument(
        "--input",
        type=Path,
        required=True,
        metavar="PATH",
        help="new data in the run's format: a .csv/.tsv/.parquet table, an image or a folder of images, an IDX images "
        "file, a .jsonl/.csv/.txt of texts",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="a .csv or .jsonl file to write (default: CSV on standard output)"
    )
    parser.add_argument(
        "--format", choices=("csv", "jsonl"), help="output format (default: from --output's suffix, else csv)"
    )
    add_inference_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.use.inference import load_model
    from trainwell.use.predict import output_format, write_predictions

    if args.output is not None and args.format is None:
        output_format(args.output)  # refuse an unknown suffix before any work
    loaded = load_model(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    predictions = loaded.predict(args.input, batch_size=args.batch_size)
    written = write_predictions(predictions, args.output, args.format)
    if args.output is None:
        sys.stdout.write(written)
    else:
        print(f"Wrote {len(predictions.ids)} predictions to {written} ({loaded.checkpoint.name}).", file=sys.stderr)
    return 0
