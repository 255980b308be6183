"""Which built-in models export to which format, and how closely the exports match the model.

    python benchmarks/export.py                       # every recipe below (about 2 minutes here)
    python benchmarks/export.py --only digits:cnn sunspots:gru

For each bundled task and model, trains ``trainwell train --data DATA --model MODEL`` for one epoch
(the exports do not depend on how well the model learned), then runs ``trainwell export`` in each
format: safetensors (reloaded into a newly built model), TorchScript (scripted, else traced) and
ONNX (torch.export, run with ONNX Runtime). Each export is compared with the model on 7 sample
inputs over two batch sizes. Prints a Markdown table for the README: the method, the largest
absolute difference from the model's outputs, and the export's time; or why the model cannot be
exported in that format.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

CASES = [
    ("digits", "mlp"),
    ("digits", "cnn"),
    ("digits", "transformer"),
    ("sunspots", "lstm"),
    ("sunspots", "gru"),
    ("sunspots", "transformer"),
    ("word_language", "lstm"),
    ("word_language", "transformer"),
]
FORMATS = ("safetensors", "torchscript", "onnx")


def run_case(data: str, model: str, root: Path) -> list[str]:
    from trainwell.exceptions import ExportError
    from trainwell.use.export import export_run
    from trainwell.recipes import RunConfig, run

    run_dir = root / f"{data}-{model}"
    run(RunConfig(data=data, model=model, epochs=1, run_dir=run_dir, progress=False))
    cells = []
    for format in FORMATS:
        started = time.perf_counter()
        try:
            check = export_run(run_dir, format)
        except ExportError as error:
            reason = str(error).split(": ", 1)[-1].split(". Export it as")[0]
            cells.append(f"no: {reason[:140]}")
            continue
        cells.append(f"{check.method}, {check.max_abs_diff:.1e}, {time.perf_counter() - started:.1f} s")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="DATA:MODEL", help="cases to run, e.g. digits:cnn")
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    cases = [tuple(case.split(":")) for case in args.only] if args.only else CASES
    print("| `--data`, `--model` | safetensors | torchscript | onnx |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for data, model in cases:
            print(f"| {data}, {model} | " + " | ".join(run_case(data, model, Path(folder))) + " |", flush=True)


if __name__ == "__main__":
    main()
