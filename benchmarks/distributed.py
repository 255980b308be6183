"""Data parallel under torchrun on this machine: accuracy on real data, and what more processes buy.

Accuracy (the default): for each seed, the digits recipe (MLP with BatchNorm and dropout,
one-cycle, 10 epochs) trains

  (a) in one process with batches of 128 (`trainwell train --batch-size 128`), and
  (b) in two processes with batches of 64 each (`torchrun --nproc_per_node=2 -m trainwell train
      --batch-size 64`): the same global batch of 128, so the same lr (scaled from the recipe's
      reference batch of 64 by the sqrt rule) and the same number of steps.

The two differ only where data parallelism itself differs from one process: BatchNorm statistics
and dropout masks are drawn per process. Reported: the final and best validation accuracy and
loss of each, and the wall time of the whole command (imports included).

Speed (--speed): an MLP 784-1024-1024-10 on generated data, global batch 256, 3 epochs of 40
steps; samples/s of the last 2 epochs (every process's samples together, validation excluded)
for: 1 process (1 thread, then 2 threads), 2 processes of 1 thread on one machine (DDP, then
FSDP), and 2 simulated machines of 1 process each (two torchrun launches, c10d rendezvous on
127.0.0.1). Scaling efficiency = samples/s / (cores used x samples/s of 1 process of 1 thread),
cores used = processes x threads. The communication share of a step is measured by running the 2-process DDP case again
with a communication hook that skips the gradient all-reduce (same computation, no exchange):
share = 1 - (step time without the exchange) / (step time with it). Each setting runs --rounds
times in rotated order; medians are reported.

    python benchmarks/distributed.py                 # accuracy, seeds 0-4
    python benchmarks/distributed.py --seeds 0 10    # seeds 0-9
    python benchmarks/distributed.py --speed         # speed, 3 rounds
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
    flags = [
        "train",
        "--data",
        "digits",
        "--seed",
        str(seed),
        "--batch-size",
        str(batch_size),
        "--quiet",
        "--out",
        str(run_dir),
    ]
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
    parser.add_argument("--speed", action="store_true", help="measure samples/s and the communication share instead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one process of a --speed setting
    args = parser.parse_args()
    if args.worker is not None:
        return speed_worker(json.loads(args.worker.read_text()))
    if args.speed:
        return speed(args.rounds)
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


# ------------------------------------------------------------------------- speed

GLOBAL_BATCH, STEPS, EPOCHS = 256, 40, 3
SETTINGS = {
    # name: (processes per machine, machines, threads per process, strategy, exchange gradients)
    "1 process, 1 thread": (1, 1, 1, "ddp", True),
    "1 process, 2 threads": (1, 1, 2, "ddp", True),
    "2 processes (DDP)": (2, 1, 1, "ddp", True),
    "2 processes (DDP), no gradient exchange": (2, 1, 1, "ddp", False),
    "2 processes (FSDP)": (2, 1, 1, "fsdp", True),
    "2 machines x 1 process (DDP)": (1, 2, 1, "ddp", True),
}


def speed_worker(spec: dict) -> None:
    """One process of a speed setting: train, and (rank 0) write the epochs' samples/s."""
    import torch
    from torch import nn

    import trainwell
    from trainwell.callbacks import Callback
    from trainwell.data import TensorLoader

    torch.set_num_threads(spec["threads"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(GLOBAL_BATCH * STEPS, 784, generator=generator)
    targets = torch.randint(0, 10, (GLOBAL_BATCH * STEPS,), generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))

    class NoExchange(Callback):
        """Skip DDP's gradient all-reduce: the same computation without the communication."""

        def on_train_begin(self, trainer, **kwargs):
            def local(state, bucket):
                done = torch.futures.Future()
                done.set_result(bucket.buffer())
                return done

            trainer.distributed.ddp.register_comm_hook(None, local)

    callbacks = [] if spec["exchange"] else [NoExchange()]
    result = trainwell.fit(
        model,
        TensorLoader(inputs, targets, batch_size=GLOBAL_BATCH // world, seed=0),
        epochs=EPOCHS,
        device=spec.get("device", "cpu"),
        strategy=spec["strategy"],
        progress=False,
        seed=0,
        callbacks=callbacks,
        early_stopping_patience=None,
        restore_best_weights=False,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["out"]).write_text(json.dumps([row["samples_per_s"] for row in result.history]))


def run_setting(name: str, root: Path) -> float:
    """Samples/s of one run of setting ``name``: the median of its epochs after the first."""
    per_machine, machines, threads, strategy, exchange = SETTINGS[name]
    out = root / "result.json"
    spec_file = root / "spec.json"
    spec_file.write_text(json.dumps({"threads": threads, "strategy": strategy, "exchange": exchange, "out": str(out)}))
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    worker = [str(Path(__file__).resolve()), "--worker", str(spec_file)]
    if per_machine * machines == 1:
        commands = [[sys.executable, *worker]]
    else:
        endpoint = f"127.0.0.1:{free_port()}"
        commands = [
            [
                sys.executable, "-m", "torch.distributed.run", f"--nnodes={machines}", f"--nproc-per-node={per_machine}",
                f"--node-rank={machine}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=speed",
                "--local-addr=127.0.0.1", *worker,
            ]
            for machine in range(machines)
        ]  # fmt: skip
    launched = [
        subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    for process in launched:
        _, errors = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"{name} failed: {errors[-2000:]}")
    return statistics.median(json.loads(out.read_text())[1:])


def speed(rounds: int) -> None:
    names = list(SETTINGS)
    results: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as root:
        for round_index in range(rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                results[name].append(run_setting(name, Path(root)))
                print(f"round {round_index} {name}: {results[name][-1]:,.0f} samples/s", flush=True)
    single = statistics.median(results["1 process, 1 thread"])
    print(
        f"\nMLP 784-1024-1024-10, global batch {GLOBAL_BATCH}, CPU ({os.cpu_count()} cores), gloo, "
        f"median of {rounds} rounds; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| setting | samples/s | vs 1 process, 1 thread | scaling efficiency (per core used) |")
    print("|---|---:|---:|---:|")
    for name in names:
        speed_now = statistics.median(results[name])
        per_machine, machines, threads = SETTINGS[name][:3]
        cores = per_machine * machines * threads
        print(f"| {name} | {speed_now:,.0f} | {speed_now / single:.2f}x | {speed_now / (cores * single):.0%} |")
    # Per round (the same conditions): the share of a step spent exchanging gradients; step time is 1 / samples/s.
    shares = [
        1 - exchanged / local
        for exchanged, local in zip(results["2 processes (DDP)"], results["2 processes (DDP), no gradient exchange"])
    ]
    print(
        f"\nCommunication share of a 2-process DDP step: {statistics.median(shares):.0%} "
        f"(rounds: {', '.join(f'{share:.0%}' for share in shares)})"
    )


if __name__ == "__main__":
    main()
