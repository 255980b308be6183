"""A closer look at one suite cell: trainwell.fit against the careful loop, bracketed.

The suite runs five contenders on every workload, so each cell gets few rounds. When a cell's
ratio looks off, this script times only the careful loop and ``trainwell.fit`` on that workload,
with the careful loop both before and after each trainwell run. The speed of this shared
machine drifts, and the mean of the two careful runs around trainwell cancels most of it.

    python benchmarks/paired.py cnn 256 --rounds 9
    python benchmarks/paired.py mlp-784 64

Prints each round's samples/s (careful before, trainwell, careful after) and ratio, then the median ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import careful, with_trainwell  # noqa: E402

from trainwell.bench import workload  # noqa: E402

EPOCHS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", help="mlp-tabular, mlp-784, cnn, lstm or transformer")
    parser.add_argument("batch_size", type=int)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    work = workload(args.workload)

    def speed(train, round_index: int) -> float:
        # The first epoch (warm-up) is dropped, as in the suite.
        return work.samples / statistics.median(train(work, args.batch_size, EPOCHS, round_index)[1:])

    ratios = []
    print(f"{work.name}, batch {args.batch_size}: samples/s of careful (before), trainwell.fit, careful (after)")
    for round_index in range(args.rounds):
        before, ours, after = speed(careful, round_index), speed(with_trainwell, round_index), speed(careful, round_index)
        ratios.append(ours / ((before + after) / 2))
        print(f"round {round_index}: {before:,.0f}  {ours:,.0f}  {after:,.0f}  ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio trainwell.fit / careful loop: {statistics.median(ratios):.3f} over {args.rounds} rounds")


if __name__ == "__main__":
    main()
