"""The fixed cost of ``trainwell.fit``: one short epoch with validation, against the careful hand-written loop.

Each contender runs in a fresh process, so that every one-time cost (lazy imports, first-call
initialisation, the checks before training) is paid as a user pays it. The ``import`` statements
are excluded from the timing (``import trainwell`` and ``from trainwell import fit`` are measured
in the README's "Import time"), and so is ``torch._dynamo``, which torch imports lazily when the
first optimizer is built, in both contenders alike (1 to 2 s here, whose noise would hide the
difference this script measures). The timing starts before the model is built and ends after the
validation pass; both contenders train the same seeded MLP (784-256-128-10) on the same
in-memory tensors with AdamW (fused, no decay on biases), clipping at 1.0, and validate in eval
mode without gradients (loss and accuracy). ``trainwell.fit`` runs with its defaults (validation
metrics, checks, model summary, early stopping, no run directory unless ``--run-dir``). The data
comes from trainwell's ``TensorLoader`` for fit and tensor slices for the careful loop, or, with
``--workers N``, from ``DataLoader(TensorDataset, num_workers=N)`` for both (workers started per
epoch, as a plain DataLoader does).

Rounds are paired: in each round both contenders run, in alternating order, and the difference
of the two is that round's fixed cost; the median over the rounds is reported.

    python benchmarks/startup.py --rounds 7                 # 1 thread
    python benchmarks/startup.py --rounds 7 --run-dir      # fit also writes a run directory
    python benchmarks/startup.py --rounds 7 --workers 2    # DataLoaders with 2 worker processes
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

TRAIN, VAL, BATCH = 2048, 512, 64

_CHILD = """
import json, sys, time
started_imports = time.perf_counter()
import torch
import torch._dynamo  # imported by torch at the first optimizer in both contenders: out of the timing
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
if {trainwell!r}:
    from trainwell import fit
    from trainwell.data import TensorLoader
imports = time.perf_counter() - started_imports
torch.set_num_threads({threads})
generator = torch.Generator().manual_seed(0)
inputs = torch.randn({train} + {val}, 784, generator=generator)
targets = (inputs @ torch.randn(784, 10, generator=generator)).argmax(dim=1)


def data_loaders():
    train = TensorDataset(inputs[:{train}], targets[:{train}])
    val = TensorDataset(inputs[{train}:], targets[{train}:])
    return (
        DataLoader(train, batch_size={batch}, shuffle=True, num_workers={workers}, generator=torch.Generator().manual_seed(0)),
        DataLoader(val, batch_size=256, num_workers={workers}),
    )


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def careful():
    model = build()
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{{"params": decay, "weight_decay": 0.01}}, {{"params": rest, "weight_decay": 0.0}}]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    x, y, x_val, y_val = inputs[:{train}], targets[:{train}], inputs[{train}:], targets[{train}:]
    order = torch.randperm({train}, generator=torch.Generator().manual_seed(0))
    if {workers}:
        train_loader, val_loader = data_loaders()
    else:
        train_loader = [(x[order[s : s + {batch}]], y[order[s : s + {batch}]]) for s in range(0, {train}, {batch})]
        val_loader = [(x_val[s : s + 256], y_val[s : s + 256]) for s in range(0, {val}, 256)]
    model.train()
    total = torch.zeros(())
    for batch_inputs, batch_targets in train_loader:
        loss = loss_fn(model(batch_inputs), batch_targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.detach()
    model.eval()
    loss_sum, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    with torch.no_grad():
        for batch_inputs, labels in val_loader:
            outputs = model(batch_inputs)
            loss_sum += loss_fn(outputs, labels).double() * len(labels)
            correct += (outputs.argmax(1) == labels).sum()
    return {{"train_loss": total.item() / ({train} // {batch}), "val_loss": loss_sum.item() / {val},
             "val_accuracy": correct.item() / {val}}}


def with_trainwell():
    import logging

    logging.getLogger("trainwell").setLevel(logging.ERROR)
    if {workers}:
        train, val = data_loaders()
    else:
        train = TensorLoader(inputs[:{train}], targets[:{train}], batch_size={batch}, seed=0)
        val = TensorLoader(inputs[{train}:], targets[{train}:], batch_size=256, shuffle=False)
    result = fit(build(), train, val, epochs=1, progress=False, device="cpu", run_dir={run_dir!r})
    return {{name: result.history[-1][name] for name in ("train_loss", "val_loss", "val_accuracy")}}


started = time.perf_counter()
metrics = with_trainwell() if {trainwell!r} else careful()
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "imports": imports, **metrics}}))
"""


def run(contender: str, threads: int, run_dir: str | None, workers: int) -> dict[str, float]:
    """One fresh process of ``contender`` ("careful" or "trainwell"): its timed seconds and metrics."""
    code = _CHILD.format(
        trainwell=contender == "trainwell",
        threads=threads,
        train=TRAIN,
        val=VAL,
        batch=BATCH,
        run_dir=run_dir,
        workers=workers,
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{contender} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both contenders")
    parser.add_argument("--run-dir", action="store_true", help="trainwell.fit writes a run directory too")
    parser.add_argument("--workers", type=int, default=0, help="DataLoaders with this many worker processes")
    args = parser.parse_args()
    print(
        f"one epoch of {TRAIN:,} samples (batch {BATCH}) + validation on {VAL}, MLP 784-256-128-10, "
        f"{args.threads} thread(s), {'with' if args.run_dir else 'no'} run directory, "
        f"{f'DataLoader with {args.workers} workers' if args.workers else 'in-memory batches'}; seconds after the imports"
    )
    differences, ratios = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            run_dir = f"{scratch}/run-{round_index}" if args.run_dir else None
            order = ["careful", "trainwell"] if round_index % 2 == 0 else ["trainwell", "careful"]
            timed = {contender: run(contender, args.threads, run_dir, args.workers) for contender in order}
            careful, ours = timed["careful"]["seconds"], timed["trainwell"]["seconds"]
            differences.append(ours - careful)
            ratios.append(ours / careful)
            print(
                f"round {round_index}: careful {careful:.3f} s, trainwell.fit {ours:.3f} s, "
                f"fixed cost {ours - careful:+.3f} s (val_accuracy {timed['careful']['val_accuracy']:.3f} "
                f"/ {timed['trainwell']['val_accuracy']:.3f})",
                flush=True,
            )
            time.sleep(0.2)
    print(
        f"median over {args.rounds} rounds: trainwell.fit - careful loop = {statistics.median(differences):+.3f} s "
        f"(ratio {statistics.median(ratios):.2f}); range {min(differences):+.3f} to {max(differences):+.3f} s"
    )


if __name__ == "__main__":
    main()
