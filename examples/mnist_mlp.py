"""The exercise everybody starts with: a 784 → 256 → 128 → 10 MLP on MNIST, trained with ``trainwell.fit``.

    python examples/mnist_mlp.py --data-dir DIR        # DIR holds the four MNIST IDX files (raw or .gz)
    python examples/mnist_mlp.py                       # downloads them into ~/.cache/trainwell/mnist first

The same run from the command line (the MLP recipe builds 784 → 256 → 128 → 10 from the data):

    trainwell train --data mnist --data-dir DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import trainwell
from trainwell.callbacks import SaveDataInfo
from trainwell.data import load
from trainwell.models import MLP


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train a 784-256-128-10 MLP on MNIST with trainwell.fit.")
    parser.add_argument("--data-dir", type=Path, default=None, help="directory of the MNIST IDX files (default: the download cache)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run directory (config.yaml, metrics.jsonl, data.json, ...)")
    args = parser.parse_args(argv)

    # 60,000 training images split 80/20 (stratified) into train and validation; t10k is the test set.
    splits = load("mnist", data_dir=args.data_dir, seed=args.seed, download=not args.no_download)
    train_loader, val_loader = splits.loaders(batch_size=args.batch_size, seed=args.seed)

    torch.manual_seed(args.seed)
    model = MLP([784, 256, 128, 10])
    result = trainwell.fit(
        model,
        train_loader,
        val_loader,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        run_dir=args.out,
        callbacks=[SaveDataInfo(splits.info)],
    )
    test_accuracy = accuracy(model, *splits.test)
    best = result.best or result.final
    print(f"best epoch {best['epoch']}: val_accuracy {best['val_accuracy']:.4f}; test_accuracy {test_accuracy:.4f}")
    return {"val_accuracy": best["val_accuracy"], "test_accuracy": test_accuracy}


@torch.no_grad()
def accuracy(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    """Share of ``labels`` the model predicts (in eval mode, on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(labels), batch_size):
        outputs = model(inputs[start : start + batch_size].to(device))
        correct += int((outputs.argmax(dim=1).cpu() == labels[start : start + batch_size]).sum())
    return correct / len(labels)


if __name__ == "__main__":
    main()
