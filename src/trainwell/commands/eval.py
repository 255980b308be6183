"""``trainwell eval RUN_DIR``: the trained model's loss and metrics on held-out data, as a table and a JSON file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainwell.commands.options import add_inference_options


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "eval",
        help="evaluate a run's best model on its test split (else validation split) or on --data",
        description=(
            "Evaluate the model of RUN_DIR (its best checkpoint by the run's monitor, val_loss by default) on "
            "held-out data: the format's test split where it has one (MNIST's t10k files), else the run's validation "
            "split, rebuilt with the run's seed and checked against its data.json; or on --data, a labelled file or "
            "folder in the run's format, prepared with the run's saved preprocessing. Prints the loss and metrics "
            "(accuracy, per-class precision/recall/F1 and the confusion matrix; MAE/RMSE/R² for regression) and "
            "writes them as JSON into RUN_DIR."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by trainwell train")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help="labelled data in the run's format: a table with the target column, a folder of class folders of images, "
        "a folder of IDX files, texts with labels",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE.json",
        help="where to write the JSON (default RUN_DIR/eval-<split or data name>.json)",
    )
    add_inference_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainwell.exceptions import DataError
    from trainwell.use.inference import evaluate_tensors, held_out_split, load_model
    from trainwell.use.preprocess import read_inputs

    loaded = load_model(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    if args.data is None:
        split, inputs, targets = held_out_split(loaded)
        source = {"split": split}
        name = split
        note = " (also used to pick the best checkpoint, so slightly optimistic)" if split == "val" else ""
        what = f"the {split} split of {loaded.config.data!r}{note}"
    else:
        prepared = read_inputs(args.data, loaded.info)
        if prepared.targets is None:
            from trainwell.use.inference import _labels_hint

            raise DataError(f"--data '{args.data}' holds no labels to evaluate against: {_labels_hint(loaded.info)}")
        inputs, targets = prepared.inputs, prepared.targets
        source = {"data": str(args.data)}
        name = args.data.stem or "data"
        what = f"'{args.data}'"
    result = evaluate_tensors(loaded, inputs, targets, args.batch_size, source)
    output = args.output if args.output is not None else args.run_dir / f"eval-{name}.json"
    result.save(output)
    print(f"{loaded.run_dir} ({loaded.checkpoint.name}) on {what}: {result.samples} samples\n")
    print(result.table())
    print(f"\nSaved {output}")
    return 0
