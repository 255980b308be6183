"""Benchmarks shipped with trainwell: the workloads and ``trainwell bench precision``.

A workload is a small model of one family (MLP, CNN, LSTM, Transformer) with in-memory synthetic
data whose labels come from a fixed random "teacher", so that there is something to learn and
final losses can be compared. The benchmark suite in ``benchmarks/`` trains the same workloads
with other trainers; every contender gets the same freshly seeded module and the same tensors,
so differences in samples/s are differences in the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[], nn.Module]
    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def samples(self) -> int:
        return len(self.targets)


class MeanPooledEncoder(nn.Module):
    """Token ids -> embedding + sinusoid-free learned positions -> TransformerEncoder -> mean -> logits."""

    def __init__(self, vocab: int, length: int, dim: int = 64, heads: int = 4, layers: int = 2, classes: int = 10):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(1, length, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.position).mean(dim=1))


class LastStateLSTM(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        _, (state, _) = self.lstm(sequences)
        return self.head(state[-1])


def _seeded(build: Callable[[], nn.Module], seed: int = 0) -> Callable[[], nn.Module]:
    def seeded_build() -> nn.Module:
        torch.manual_seed(seed)
        return build()

    return seeded_build


def workloads(scale: float = 1.0) -> list[Workload]:
    """The suite; ``scale`` shrinks the sample counts for quick checks."""
    generator = torch.Generator().manual_seed(0)

    def n(count: int) -> int:
        return max(256, int(count * scale))

    tabular_x = torch.randn(n(16000), 30, generator=generator)
    mnist_x = torch.randn(n(8000), 784, generator=generator)
    image_x = torch.randn(n(4000), 1, 28, 28, generator=generator)
    sequence_x = torch.randn(n(4000), 32, 8, generator=generator)
    token_x = torch.randint(0, 500, (n(4000), 32), generator=generator)

    def labels(inputs: torch.Tensor, classes: int) -> torch.Tensor:
        """Labels a fixed random linear teacher gives: learnable, unlike random labels."""
        features = inputs.float().reshape(len(inputs), -1)
        if not inputs.is_floating_point():
            features = torch.cos(features)  # token ids: a fixed nonlinear feature per id
        teacher = torch.randn(features.shape[1], classes, generator=generator)
        return (features @ teacher).argmax(dim=1)

    return [
        Workload(
            "mlp-tabular",
            "MLP 30-64-64-2 on 16,000 rows",
            _seeded(lambda: nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))),
            tabular_x,
            labels(tabular_x, 2),
        ),
        Workload(
            "mlp-784",
            "MLP 784-256-128-10 on 8,000 MNIST-sized rows",
            _seeded(lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))),
            mnist_x,
            labels(mnist_x, 10),
        ),
        Workload(
            "cnn",
            "CNN conv16-conv32-fc on 4,000 28x28 images",
            _seeded(
                lambda: nn.Sequential(
                    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
                )
            ),
            image_x,
            labels(image_x, 10),
        ),
        Workload(
            "lstm",
            "LSTM 8-64 on 4,000 sequences of 32 steps",
            _seeded(LastStateLSTM),
            sequence_x,
            labels(sequence_x, 10),
        ),
        Workload(
            "transformer",
            "Transformer encoder (2 layers, d=64, 4 heads) on 4,000 sequences of 32 tokens",
            _seeded(lambda: MeanPooledEncoder(vocab=500, length=32)),
            token_x,
            labels(token_x, 10),
        ),
    ]


def workload(name: str, scale: float = 1.0) -> Workload:
    """The workload called ``name`` (``mlp-tabular``, ``mlp-784``, ``cnn``, ``lstm``, ``transformer``)."""
    from trainwell.exceptions import ConfigError

    found = {w.name: w for w in workloads(scale)}
    if name not in found:
        raise ConfigError(f"model={name!r} is not a benchmark workload: expected one of {', '.join(map(repr, found))}.")
    return found[name]


@dataclass
class PrecisionResult:
    precision: str
    samples_per_s: float
    final_loss: float
    speedup: float = 1.0


def native_bf16_cpu() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None where it cannot be told."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return None
    return " avx512_bf16" in flags or " amx_bf16" in flags


def compare_precisions(
    name: str = "mlp-784", batch_size: int = 256, steps: int = 200, device: str = "auto", rounds: int = 3
) -> list[PrecisionResult]:
    """Train the same workload for ``steps`` steps in each precision the device supports.

    fp32 and bf16 everywhere; fp16 (with a GradScaler) on CUDA. Precisions run interleaved for
    ``rounds`` rounds after a warm-up, and the median samples/s is kept; the final loss is the
    validation loss on a fixed sample after the last round, computed in the same precision.

    Example:
        >>> results = compare_precisions("mlp-tabular", batch_size=64, steps=4, device="cpu", rounds=1)
        >>> [r.precision for r in results]
        ['fp32', 'bf16']
    """
    import statistics

    from trainwell.data import TensorLoader
    from trainwell.display import progress
    from trainwell.loop.trainer import Trainer
    from trainwell.system import resolve_device

    chosen = resolve_device(device)
    precisions = ["fp32", "bf16"] + (["fp16"] if chosen.type == "cuda" else [])
    data = workload(name, scale=max(steps * batch_size / 4000, 0.1))
    inputs, targets = data.inputs[: steps * batch_size], data.targets[: steps * batch_size]
    held_out = (data.inputs[-1024:], data.targets[-1024:])

    def train(precision: str, seed: int) -> tuple[float, float]:
        loader = TensorLoader(inputs, targets, batch_size=batch_size, seed=seed, drop_last=True)
        trainer = Trainer(epochs=1, precision=precision, device=str(chosen), progress=False, seed=seed)
        result = trainer.fit(data.build(), loader, [held_out])
        return result.history[-1]["samples_per_s"], result.history[-1]["val_loss"]

    speeds: dict[str, list[float]] = {p: [] for p in precisions}
    losses: dict[str, float] = {}
    trainwell_logger = logging.getLogger("trainwell")
    level = trainwell_logger.level
    trainwell_logger.setLevel(logging.ERROR)  # a table, not 3 x rounds training logs
    bar = progress(total=len(precisions) * (rounds + 1), desc=f"bench {name}", unit="run", leave=False)
    try:
        for precision in precisions:  # warm-up: kernel selection and allocations off the clock
            bar.set_postfix_str(f"warm-up {precision}")
            train(precision, 0)
            bar.update()
        for round_index in range(rounds):
            for precision in precisions:
                bar.set_postfix_str(f"round {round_index + 1}/{rounds} {precision}")
                speed, loss = train(precision, round_index)
                speeds[precision].append(speed)
                losses[precision] = loss
                bar.update()
    finally:
        bar.close()
        trainwell_logger.setLevel(level)
    baseline = statistics.median(speeds["fp32"])
    return [
        PrecisionResult(p, statistics.median(speeds[p]), losses[p], statistics.median(speeds[p]) / baseline)
        for p in precisions
    ]


def format_precision_table(results: list[PrecisionResult], device: Any = None) -> str:
    lines = ["| precision | samples/s | speed-up vs fp32 | final loss | loss vs fp32 |", "|---|---:|---:|---:|---:|"]
    reference = results[0].final_loss
    for result in results:
        change = (result.final_loss - reference) / reference if reference else float("nan")
        lines.append(
            f"| {result.precision} | {result.samples_per_s:,.0f} | {result.speedup:.2f}x | {result.final_loss:.4f} | {change:+.1%} |"
        )
    return "\n".join(lines)
