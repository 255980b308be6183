"""Data parallel on real data: `trainwell train` in 2 processes (torchrun, gloo) against 1 process, same global batch.

For each seed, the digits recipe (MLP with BatchNorm and dropout, one-cycle, 10 epochs) trains

  (a) in one process with batches of 128 (`trainwell train --batch-size 128`), and
  (b) in two processes with batches of 64 each (`torchrun --nproc_per_node=2 -m trainwell train
      --batch-size 64`): the same global batch of 128, so the same lr (scaled from the recipe's
      reference batch of 64 by the sqrt rule) and the same number of steps.

The two differ only where data parallelism itself differs from one process: BatchNorm statistics
and dropout masks are drawn per process. Reported: the final and best validation accuracy and
loss of each, and the wall time of the whole command (imports included).

    python benchmarks/distributed.py                 # seeds 0-4
    python benchmarks/distributed.py --seeds 0 10    # seeds 0-9
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train(run_dir: Path, seed: int, processes: int, batch_size: int) -> dict:
    flags = ["train", "--data", "digits", "--seed", str(seed), "--batch-size", str(batch_size), "--quiet", "--out", str(run_dir)]
    if processes == 1:
        command = [sys.executable, "-m", "trainwell", *flags]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={processes}",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "trainwell", *flags,
        ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    best = min(epochs, key=lambda r: r["val_loss"])
    return {
        "final_accuracy": epochs[-1]["val_accuracy"],
        "final_loss": epochs[-1]["val_loss"],
        "best_accuracy": best["val_accuracy"],
        "best_loss": best["val_loss"],
        "epochs": len(epochs),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 5], metavar=("FIRST", "STOP"))
    args = parser.parse_args()
    settings = {"1 process x 128": (1, 128), "2 processes x 64": (2, 64)}
    results: dict[str, list[dict]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as root:
        for seed in range(*args.seeds):
            for name, (processes, batch_size) in settings.items():
                run = train(Path(root) / f"{processes}-{seed}", seed, processes, batch_size)
                results[name].append(run)
                print(f"seed {seed} {name}: {json.dumps(run)}", flush=True)
    print(f"\ndigits MLP recipe, seeds {args.seeds[0]}-{args.seeds[1] - 1}, mean (worst seed)\n")
    print("| setting | final val accuracy | final val_loss | best-epoch val accuracy | best val_loss | s per run |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():

        def mean(key: str, runs: list[dict] = runs) -> float:
            return statistics.mean(run[key] for run in runs)

        worst = min(run["final_accuracy"] for run in runs)
        print(
            f"| {name} | {mean('final_accuracy'):.4f} ({worst:.4f}) | {mean('final_loss'):.4f} | "
            f"{mean('best_accuracy'):.4f} | {mean('best_loss'):.4f} | {mean('seconds'):.1f} |"
        )


if __name__ == "__main__":
    main()
