"""Token-data recipes against a tuned hand-written loop on word_language (characters -> language).

    python benchmarks/token_recipes.py tune --model lstm --log tune.jsonl      # grid search, seed 0
    python benchmarks/token_recipes.py compare --model lstm --seeds 3          # recipe vs the tuned loop
    python benchmarks/token_recipes.py summary tune.jsonl

``tune``: the hand-written loop (the registry's model, AdamW with weight decay 0.01, torch's
``OneCycleLR``, gradient clipping at 1.0, shuffled batches of 64, the last epoch's model) at each
point of a small search over peak lr, epochs and width (``POINTS``: the lr first, then width and
epochs around the best; points already in ``--log`` are not run again), each trained on 80% of
the recipe's training split and scored on the other 20% (the validation split is not looked at
while tuning).

``compare``: the best grid point, trained on the whole training split, against
``trainwell train --data word_language --model MODEL --seed S`` (the recipe, scored as the model
it returns), both on the validation split, for each seed. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _points(keys: tuple[str, ...], *rows: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [dict(zip(keys, row)) for row in rows]


# A coordinate search (a full grid would take hours on this machine): the recipe's own point, the lr
# around it, then width, epochs and dropout.
POINTS: dict[str, list[dict[str, Any]]] = {
    "lstm": _points(
        ("lr", "epochs", "width"),
        (1e-2, 10, 64), (3e-3, 10, 64), (3e-3, 10, 128), (1e-2, 10, 128), (3e-2, 10, 128), (1e-2, 20, 128), (3e-3, 20, 128),
    ),
    "gru": _points(("lr", "epochs", "width"), (1e-2, 10, 64), (3e-3, 10, 128), (1e-2, 10, 128), (1e-2, 20, 128)),
    "transformer": _points(
        ("lr", "epochs", "dropout"), (3e-3, 10, 0.0), (1e-3, 10, 0.0), (3e-3, 10, 0.1), (3e-3, 20, 0.0)
    ),
}


def build(model: str, info: Any, point: dict[str, Any]) -> Any:
    from trainwell.models import build as build_registered

    sizes = {"vocab_size": info.vocab_size, "output_size": info.num_outputs}
    if model == "transformer":
        return build_registered(model, **sizes, dropout=point["dropout"])
    return build_registered(model, input_size=32, hidden_size=point["width"], **sizes)


def hand_written_loop(model: str, point: dict[str, Any], train: tuple, held_out: tuple, info: Any, seed: int) -> float:
    """Train with the tuned loop on ``train`` and return the accuracy of the last epoch's model on ``held_out``."""
    import torch

    from trainwell.system import seed_everything

    seed_everything(seed)
    network = build(model, info, point)
    inputs, targets = train
    batch = 64
    steps = -(-len(inputs) // batch) * point["epochs"]
    optimizer = torch.optim.AdamW(network.parameters(), lr=point["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=point["lr"], total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(point["epochs"]):
        network.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch):
            index = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(network(inputs[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    network.eval()
    with torch.no_grad():
        predicted = torch.cat([network(held_out[0][i : i + 1024]).argmax(dim=1) for i in range(0, len(held_out[0]), 1024)])
    return (predicted == held_out[1]).float().mean().item()


def splits_for(seed: int) -> Any:
    from trainwell.recipes import RunConfig, build_data

    return build_data(RunConfig(data="word_language", seed=seed))


def tune(model: str, log: Path | None) -> list[dict[str, Any]]:
    import torch

    splits = splits_for(0)
    inputs, targets = splits.train
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(inputs))
    train, held_out = (inputs[order[:cut]], targets[order[:cut]]), (inputs[order[cut:]], targets[order[cut:]])
    done = []
    if log is not None and log.exists():
        done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [row for row in done if row["kind"] == "tune" and row["model"] == model]
    for point in POINTS[model]:
        if any(row["point"] == point for row in rows):
            continue
        started = time.perf_counter()
        accuracy = hand_written_loop(model, point, train, held_out, splits.info, seed=0)
        row = {"kind": "tune", "model": model, "point": point, "accuracy": accuracy, "seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"# {model} {point}: {accuracy:.4f} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        if log:
            with log.open("a") as file:
                file.write(json.dumps(row) + "\n")
    return rows


def compare(model: str, point: dict[str, Any], seeds: int, log: Path | None) -> None:
    from trainwell.recipes import RunConfig
    from trainwell.recipes import run as run_recipe

    for seed in range(seeds):
        splits = splits_for(seed)
        started = time.perf_counter()
        tuned = hand_written_loop(model, point, splits.train, splits.val, splits.info, seed)
        tuned_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = run_recipe(RunConfig(data="word_language", model=model, seed=seed, progress=False))
        row = {
            "kind": "compare", "model": model, "seed": seed, "point": point, "tuned": tuned,
            "recipe": result.best["val_accuracy"], "tuned_seconds": tuned_seconds,
            "recipe_seconds": time.perf_counter() - started,
        }
        print(f"# {model} seed {seed}: tuned loop {tuned:.4f}, recipe {row['recipe']:.4f}", file=sys.stderr, flush=True)
        if log:
            with log.open("a") as file:
                file.write(json.dumps(row) + "\n")


def summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    tuned = [row for row in rows if row["kind"] == "tune"]
    for model in dict.fromkeys(row["model"] for row in tuned):
        mine = sorted((row for row in tuned if row["model"] == model), key=lambda row: -row["accuracy"])
        lines.append(f"{model}: best of {len(mine)} grid points on the held-out 20% of the training split: "
                     + ", ".join(f"{row['point']} {row['accuracy']:.4f}" for row in mine[:3]))
    compared = [row for row in rows if row["kind"] == "compare"]
    if compared:
        lines.append("| model | tuned loop | seeds | tuned loop: mean val accuracy | recipe: mean val accuracy | recipe / tuned | s per run: recipe / tuned |")
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for model in dict.fromkeys(row["model"] for row in compared):
            mine = [row for row in compared if row["model"] == model]
            loop, recipe = statistics.mean(r["tuned"] for r in mine), statistics.mean(r["recipe"] for r in mine)
            lines.append(
                f"| {model} | {mine[0]['point']} | {len(mine)} | {loop:.4f} | {recipe:.4f} | {recipe / loop:.3f} | "
                f"{statistics.median(r['recipe_seconds'] for r in mine):.0f} / {statistics.median(r['tuned_seconds'] for r in mine):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("tune", "compare", "summary"))
    parser.add_argument("file", nargs="?", type=Path, help="summary: the log to read")
    parser.add_argument("--model", default="lstm", choices=tuple(POINTS))
    parser.add_argument("--point", type=json.loads, help="compare: the grid point (JSON); default: the best in --log")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    if args.action == "summary":
        print(summary([json.loads(line) for line in args.file.read_text().splitlines() if line.strip()]))
        return

    import torch

    torch.set_num_threads(1)
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    if args.action == "tune":
        rows = tune(args.model, args.log)
        print(summary(rows))
        return
    point = args.point
    if point is None:
        logged = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
        tuned = [row for row in logged if row["kind"] == "tune" and row["model"] == args.model]
        point = max(tuned, key=lambda row: row["accuracy"])["point"]
    compare(args.model, point, args.seeds, args.log)
    print(summary([json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]) if args.log else "")


if __name__ == "__main__":
    main()
