"""What checkpoints cost: the default recipe (``trainwell train``) with and without them.

The built-in recipe (MLP 64-256-128-10 on digits, 10 epochs, batch 64) trains in-process with its
default checkpoints (one per epoch, committed with fsyncs) and with ``save_checkpoints=False``,
alternating, and the median wall time of each is reported, with the size of one checkpoint and
the median time to write and commit it again.

    python benchmarks/checkpoint_cost.py            # 5 rounds, about a minute
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from trainwell.files.checkpoint import read_checkpoint, write_checkpoint
from trainwell.recipes import RunConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    timings: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as scratch:
        run(RunConfig(epochs=1, progress=False, run_dir=Path(scratch) / "warm-up"))
        for index in range(args.rounds):
            for save in (True, False):
                started = time.perf_counter()
                run(RunConfig(progress=False, save_checkpoints=save, run_dir=Path(scratch) / f"{index}-{save}"))
                timings[save].append(time.perf_counter() - started)
        path = next((Path(scratch) / "0-True" / "checkpoints").glob("*.pt"))
        contents = read_checkpoint(path)
        writes = []
        for index in range(args.rounds):
            started = time.perf_counter()
            write_checkpoint(Path(scratch) / f"again-{index}.pt", contents, step=index)
            writes.append(time.perf_counter() - started)
        size = path.stat().st_size
    with_checkpoints, without = statistics.median(timings[True]), statistics.median(timings[False])
    print(f"trainwell train recipe, 10 epochs, median of {args.rounds}:")
    print(f"  with a checkpoint per epoch: {with_checkpoints:.2f} s")
    print(f"  without checkpoints:         {without:.2f} s")
    print(
        f"  one checkpoint: {size / 1e6:.2f} MB, committed in {statistics.median(writes) * 1000:.1f} ms (median)"
    )


if __name__ == "__main__":
    main()
