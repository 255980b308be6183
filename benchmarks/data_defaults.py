"""Do the data defaults earn their place? Measured on bundled scikit-learn data, several seeds.

Part 1, missing values in a table (``missing="impute"``, the default, against ``"drop"``):
breast_cancer and wine written as CSV files with a share of feature cells blanked at random,
then trained with the ``trainwell train`` recipe (MLP, one-cycle, 20 epochs). Reported: rows
left to train and validate on, and validation accuracy, mean over seeds. Under ``drop`` the
validation rows are the complete ones only, so its accuracy is measured on fewer, easier rows.

Part 2, image augmentation (off by default): digits written as an image folder of 8x8 PNGs,
trained with the recipe for 20 epochs without augmentation, with ``augment=True`` (random crop
with 1-pixel padding and horizontal flip), and with each half alone. Reported: validation
accuracy, mean and worst over seeds.

Part 3, loading speed: ``load("mnist")`` of generated MNIST-size IDX files (60,000 + 10,000
images, gzip), median of 3 loads.

    python benchmarks/data_defaults.py              # 5 seeds (several minutes)
    python benchmarks/data_defaults.py --seeds 2    # quicker, noisier
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from trainwell.data import load
from trainwell.recipes import RunConfig, run


def write_csv_with_holes(name: str, path: Path, share: float, seed: int) -> Path:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    rng = np.random.default_rng(seed)
    features = bunch.data.astype(object)
    features[rng.random(features.shape) < share] = ""
    header = [f"f{i}" for i in range(features.shape[1])] + ["label"]
    lines = [",".join(header)] + [",".join(map(str, row)) + f",{label}" for row, label in zip(features, bunch.target)]
    path.write_text("\n".join(lines) + "\n")
    return path


def part_missing(seeds: int, folder: Path) -> None:
    print("\n## Part 1: missing values (recipe MLP, 20 epochs)\n")
    print("| data | blanked cells | policy | rows used | val accuracy |")
    print("|---|---:|---|---:|---:|")
    for name in ("breast_cancer", "wine"):
        for share in (0.02, 0.10):
            for policy in ("impute", "drop"):
                accuracies, rows = [], []
                for seed in range(seeds):
                    path = write_csv_with_holes(name, folder / f"{name}-{share}-{seed}.csv", share, seed)
                    try:
                        result = run(RunConfig(data=str(path), target="label", missing=policy, epochs=20, seed=seed, progress=False))
                    except ValueError as error:  # too few complete rows to split
                        print(f"| {name} | {share:.0%} | {policy} | - | failed: {str(error)[:60]} |")
                        break
                    accuracies.append(result.final["val_accuracy"])
                    splits = load(path, target="label", missing=policy, seed=seed)
                    rows.append(len(splits.train[1]) + len(splits.val[1]))
                else:
                    print(f"| {name} | {share:.0%} | {policy} | {statistics.mean(rows):.0f} | {statistics.mean(accuracies):.4f} |")


def write_digit_images(root: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{index}.png")
    return root


AUGMENTATIONS = {
    "off (default)": None,
    "crop (pad 1) and flip: augment=True": {"flip": True, "crop_padding": 1},
    "crop (pad 1) only": {"flip": False, "crop_padding": 1},
    "flip only": {"flip": True, "crop_padding": 0},
}


def train_images(root: Path, augment: dict | None, seed: int) -> float:
    """The recipe's run (seeded the same way), with the augmentation settings swapped in."""
    from trainwell.recipes import build_model
    from trainwell.system import seed_everything
    from trainwell.loop.trainer import Trainer

    config = RunConfig(data=str(root), epochs=20, seed=seed, progress=False)
    seed_everything(seed)
    splits = load(root, seed=seed)
    splits.info.preprocessing["augment"] = augment
    train_loader, val_loader = splits.loaders(config.batch_size, seed=seed)
    model = build_model(config, splits.info)
    return Trainer(config).fit(model, train_loader, val_loader).final["val_accuracy"]


def part_augment(seeds: int, folder: Path) -> None:
    root = write_digit_images(folder / "digits")
    print("\n## Part 2: augmentation on digits as 8x8 PNGs (recipe MLP, 20 epochs)\n")
    print("| augmentation | mean val accuracy | worst |")
    print("|---|---:|---:|")
    for label, settings in AUGMENTATIONS.items():
        accuracies = [train_images(root, settings, seed) for seed in range(seeds)]
        print(f"| {label} | {statistics.mean(accuracies):.4f} | {min(accuracies):.4f} |")


def part_speed(folder: Path) -> None:
    from trainwell.data.idx import write_idx_split

    rng = np.random.default_rng(0)
    data_dir = folder / "mnist"
    for split, count in (("train", 60_000), ("test", 10_000)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx_split(data_dir, split, rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), labels)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        load("mnist", data_dir=data_dir, download=False)
        timings.append(time.perf_counter() - started)
    print(f"\n## Part 3: load('mnist') of 60,000 + 10,000 generated gzip IDX images: {statistics.median(timings):.2f} s (median of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 13")
    args = parser.parse_args()
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        if "1" in args.parts:
            part_missing(args.seeds, Path(folder))
        if "2" in args.parts:
            part_augment(args.seeds, Path(folder))
        if "3" in args.parts:
            part_speed(Path(folder))


if __name__ == "__main__":
    main()
