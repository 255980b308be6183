"""Extra memory and time of one validation pass over many classes (``trainwell.evaluate``, the pass training validates with).

A linear classifier (32 features -> C classes) is evaluated on 4,096 random samples in batches of
256. The extra memory is the peak resident set size during the pass minus the resident set
before it (Linux: the peak is reset through /proc/self/clear_refs just before the pass), so it
counts everything the pass allocates: the logits of a batch, and whatever the metrics keep.
A first pass over one batch runs before, so that imports and one-time allocations are not counted.

    python benchmarks/validation_memory.py                     # 100, 1,000, 9,228 and 20,000 classes
    python benchmarks/validation_memory.py --classes 20000 --metrics accuracy f1 precision recall top5 perplexity

Each setting runs in a fresh process; threads: 1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

SAMPLES, BATCH, FEATURES = 4096, 256, 32


def _kilobytes(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure(classes: int, metrics: list[str] | None) -> dict[str, float]:
    """One pass in this process: extra peak RSS (MB), seconds, and the metrics' names."""
    import torch

    import trainwell
    from trainwell.data import TensorLoader

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(FEATURES, classes)
    inputs = torch.randn(SAMPLES, FEATURES, generator=generator)
    targets = torch.randint(0, classes, (SAMPLES,), generator=generator)
    options = {} if metrics is None else {"metrics": metrics}
    trainwell.evaluate(model, [(inputs[:BATCH], targets[:BATCH])], **options)  # imports, one-time allocations
    loader = TensorLoader(inputs, targets, batch_size=BATCH, shuffle=False)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
    before = _kilobytes("VmRSS")
    started = time.perf_counter()
    result = trainwell.evaluate(model, loader, **options)
    seconds = time.perf_counter() - started
    extra = (_kilobytes("VmHWM") - before) / 1024
    return {"classes": classes, "extra_mb": extra, "seconds": seconds, "metrics": sorted(result.metrics)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 9228, 20000])
    parser.add_argument("--metrics", nargs="*", default=None, help="metric names (default: the task's default set)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.classes[0], args.metrics)))
        return
    print(f"{SAMPLES:,} samples in batches of {BATCH}, 1 thread; metrics: {args.metrics or 'the default set'}")
    print("| classes | extra peak RSS (MB) | pass (s) | metrics |\n|---:|---:|---:|---|")
    for classes in args.classes:
        command = [sys.executable, __file__, "--child", "--classes", str(classes)]
        if args.metrics is not None:
            command += ["--metrics", *args.metrics]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(
                f"| {classes:,} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode} | | |"
            )
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {classes:,} | {row['extra_mb']:,.0f} | {row['seconds']:.2f} | {', '.join(row['metrics'])} |", flush=True
        )


if __name__ == "__main__":
    main()
