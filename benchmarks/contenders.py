"""The contenders: one function each that trains a workload and returns its epochs' train times.

Every contender trains the same freshly seeded module on the same tensors, with AdamW
(lr 1e-3, weight decay 0.01) and cross-entropy. The careful loop, trainwell, Lightning and Keras
also clip the gradient norm at 1.0; the tutorial loop is the plain loop from the PyTorch
tutorials (DataLoader over a TensorDataset, default AdamW, ``loss.item()`` every step).
Each function returns the wall time of every epoch's training pass (validation is off for all).

PyTorch Lightning and Keras 3 (torch backend) are optional (``pip install -e '.[bench]'``);
their contenders are skipped when the package is missing.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell.bench import Workload
from trainwell.data import TensorLoader
from trainwell.loop.optimizers import param_groups

EpochTimes = list[float]


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def careful(workload: Workload, batch_size: int, epochs: int, seed: int, device: str = "cpu") -> EpochTimes:
    """A careful hand-written loop with trainwell's default settings (data resident on the device)."""
    model = workload.build().to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, fused=True)
    parameters = list(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = workload.inputs.to(device), workload.targets.to(device)
    times = []
    model.train()
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(targets), generator=generator).to(device)
        for start in range(0, len(targets), batch_size):
            index = order[start : start + batch_size]
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def tutorial(workload: Workload, batch_size: int, epochs: int, seed: int, device: str = "cpu") -> EpochTimes:
    """The loop from the PyTorch tutorials (batches copied to the device each step)."""
    torch.manual_seed(seed)
    model = workload.build().to(device)
    loader = DataLoader(TensorDataset(workload.inputs, workload.targets), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        total_loss = 0.0
        for batch_x, batch_y in loader:
            batch_x, batch_y = batch_x.to(device), batch_y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(batch_x), batch_y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
        _synchronize(device)
        times.append(time.perf_counter() - started)
    return times


class _EpochTimer(trainwell.Callback):
    def __init__(self, device: str) -> None:
        self.times: EpochTimes = []
        self.device = device
        self._started = 0.0

    def on_epoch_begin(self, trainer, epoch, **kwargs) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, metrics, **kwargs) -> None:
        _synchronize(self.device)
        self.times.append(time.perf_counter() - self._started)


def with_trainwell(workload: Workload, batch_size: int, epochs: int, seed: int, device: str = "cpu", **options) -> EpochTimes:
    """``trainwell.fit`` with its defaults (or ``options``) and the in-memory TensorLoader."""
    logging.getLogger("trainwell").setLevel(logging.ERROR)
    timer = _EpochTimer(device)
    loader = TensorLoader(workload.inputs.to(device), workload.targets.to(device), batch_size=batch_size, seed=seed)
    trainwell.fit(workload.build(), loader, epochs=epochs, progress=False, callbacks=[timer], device=device, **options)
    return timer.times


def with_lightning(workload: Workload, batch_size: int, epochs: int, seed: int) -> EpochTimes:
    """PyTorch Lightning 2 with the same module, optimizer, clipping and in-memory batches."""
    import lightning

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    class Module(lightning.LightningModule):
        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_index):
            inputs, targets = batch
            return self.loss_fn(self.network(inputs), targets)

        def configure_optimizers(self):
            return torch.optim.AdamW(param_groups(self.network, 0.01), lr=1e-3, fused=True)

    class Timer(lightning.Callback):
        def __init__(self) -> None:
            self.times: EpochTimes = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self._started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.times.append(time.perf_counter() - self._started)

    timer = Timer()
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = TensorLoader(workload.inputs, workload.targets, batch_size=batch_size, seed=seed)
    trainer.fit(Module(workload.build()), train_dataloaders=loader)
    return timer.times


def with_keras(workload: Workload, batch_size: int, epochs: int, seed: int) -> EpochTimes:
    """Keras 3 on the torch backend: the same torch module wrapped as a layer, Keras' own fit."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(seed)
    tokens = not workload.inputs.is_floating_point()
    inputs = keras.Input(shape=tuple(workload.inputs.shape[1:]), dtype="int64" if tokens else "float32")
    module = workload.build()
    with torch.no_grad():
        output_shape = tuple(module(workload.inputs[:2]).shape[1:])
    outputs = keras.layers.TorchModuleWrapper(module, output_shape=output_shape)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    times: EpochTimes = []
    started = [0.0]
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter() - started[0]),
    )
    model.fit(
        workload.inputs.numpy(), workload.targets.numpy(), batch_size=batch_size, epochs=epochs,
        shuffle=True, verbose=0, callbacks=[timer],
    )
    return times


def available() -> dict[str, Callable[[Workload, int, int, int], EpochTimes]]:
    """The contenders that can run here, in report order."""
    contenders = {"careful loop": careful, "tutorial loop": tutorial, "trainwell.fit": with_trainwell}
    try:
        import lightning  # noqa: F401

        contenders["Lightning"] = with_lightning
    except ImportError:
        pass
    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras  # noqa: F401

        contenders["Keras 3 (torch)"] = with_keras
    except ImportError:
        pass
    return contenders
