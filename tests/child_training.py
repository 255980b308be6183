"""A small training run for the crash, preemption and exact-resume tests, run in child processes.

Two ways to run it:

    python tests/child_training.py run SPEC_JSON     # one run in a fresh interpreter
    python tests/child_training.py serve             # a zygote: imports torch and trainwell once, then
                                                     # reads one SPEC_JSON per stdin line, forks a child
                                                     # that runs it, and prints "pid N" and "exit N STATUS"

Forking from a process that has only imported modules (never run a torch operation, so no thread
pool exists yet) gives each run a new process in the same state as a fresh interpreter, without
paying for the torch import every time.

A spec (JSON) holds: ``run_dir``, ``losses`` (a file to append "step loss.hex()" lines to),
``final`` (where to save the final weights), and optionally ``resume``, ``loader`` ("tensor",
"dataloader" or "dataloader_generator"), ``epochs``, ``every_steps``, ``kill_at_step`` (SIGKILL
itself after that step's callbacks, before the Trainer checkpoints it), ``kill_in_save``
(``[operation, n]``: SIGKILL itself at the n-th ``os.replace``/``os.fsync``/unlink/``write``
inside checkpoint writing, before or after it), ``signal_at_step`` (send itself SIGTERM there).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def run(spec: dict) -> None:
    import logging

    import torch
    from torch import nn

    from trainwell.callbacks import Callback
    from trainwell.data import TensorLoader
    from trainwell.loop.trainer import Trainer

    logging.getLogger("trainwell").setLevel(logging.ERROR)
    # One thread: every child computes the same way, and a loaded machine does not slow it tenfold.
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(320, 8, generator=generator)
    targets = (inputs[:, 0] + inputs[:, 1] > 0).long() + (inputs[:, 2] > 1).long()
    train_x, train_y, val_x, val_y = inputs[:256], targets[:256], inputs[256:], targets[256:]
    # torch's initial seed differs from process to process: seed it, so that a TensorLoader without
    # a seed draws the same one in every run (and a resumed run must restore it from the checkpoint).
    torch.manual_seed(7)
    loader_kind = spec.get("loader", "tensor")
    if loader_kind == "tensor":
        train_loader = TensorLoader(train_x, train_y, batch_size=32, shuffle=True, seed=None)
    else:
        from torch.utils.data import DataLoader, TensorDataset

        own = torch.Generator().manual_seed(5) if loader_kind == "dataloader_generator" else None
        train_loader = DataLoader(TensorDataset(train_x, train_y), batch_size=32, shuffle=True, generator=own)
    val_loader = TensorLoader(val_x, val_y, batch_size=64, shuffle=False)
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3)
    )

    class ScaledTrainer(Trainer):
        """A GradScaler on the CPU (fp32 gradients), so that its state evolves and must be resumed too."""

        def _setup(self, *args, **kwargs):
            super()._setup(*args, **kwargs)
            self.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=3)

    class Recorder(Callback):
        def __init__(self):
            self.file = open(spec["losses"], "a", encoding="utf-8")

        def on_batch_end(self, trainer, batch_index, loss, **kwargs):
            self.file.write(f"{trainer.global_step} {float(loss).hex()}\n")
            self.file.flush()
            if trainer.global_step == spec.get("kill_at_step"):
                os.kill(os.getpid(), signal.SIGKILL)
            if trainer.global_step == spec.get("signal_at_step"):
                os.kill(os.getpid(), signal.SIGTERM)

    class ScriptedValLoss(Callback):
        """Validation losses whose best is epoch 3 of 6: early stopping must restore epoch 3's weights at the end."""

        def on_eval_end(self, trainer, metrics, **kwargs):
            metrics["val_loss"] = [1.0, 0.8, 0.5, 0.6, 0.7, 0.65][trainer.epoch - 1]

    if spec.get("kill_in_save"):
        _kill_inside_checkpoint_writes(*spec["kill_in_save"])
    trainer = ScaledTrainer(
        epochs=spec.get("epochs", 6),
        lr=spec.get("lr", 0.1),
        schedule="onecycle",
        seed=0,
        run_dir=spec["run_dir"],
        checkpoint_every_steps=spec.get("every_steps", 1),
        early_stopping_patience=3,
        progress=False,
        callbacks=[ScriptedValLoss(), Recorder()],
    )
    trainer.fit(model, train_loader, val_loader, resume=spec.get("resume"))
    torch.save(model.state_dict(), spec["final"])


def _kill_inside_checkpoint_writes(operation: str, count: int) -> None:
    """SIGKILL this process at the ``count``-th call of ``operation`` made while writing checkpoints.

    ``operation`` is ``replace-before``/``replace-after`` (the atomic rename of a checkpoint or a
    manifest, not done / done), ``fsync``, ``unlink`` (pruning old checkpoints) or ``write`` (a chunk
    of a checkpoint being serialised, leaving a partial temporary file).
    """
    from trainwell.files import atomic

    calls = [0]

    def counted(original, before=True):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if before and calls[0] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if not before and calls[0] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper

    if operation.startswith("replace"):
        atomic.os.replace = counted(os.replace, before=operation == "replace-before")
    elif operation == "fsync":
        atomic.os.fsync = counted(os.fsync)
    elif operation == "unlink":
        import pathlib

        pathlib.Path.unlink = counted(pathlib.Path.unlink)
    elif operation == "write":
        atomic.HashingWriter.write = counted(atomic.HashingWriter.write)
    else:
        raise ValueError(f"unknown operation {operation!r}")


def serve() -> None:
    # Imported once, before any fork: torch, trainwell, and what they import on first use (the
    # optimizers import torch._dynamo, which alone takes seconds). No torch operation runs here, so
    # torch's thread pool does not exist yet; the only other thread, OpenBLAS's, is fork-safe (as
    # for DataLoader workers, which are forked the same way).
    import numpy  # noqa: F401
    import tenacity  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401
    import yaml  # noqa: F401

    import trainwell.loop.trainer  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                run(spec)
                code = 0
            except BaseException as error:  # report and exit; never return into the server loop
                print(f"error {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


class Zygote:
    """The test side of ``serve``: starts the server once and runs specs in forked children.

    Example:
        >>> zygote = Zygote()  # doctest: +SKIP
        >>> zygote.run({"run_dir": "...", "losses": "...", "final": "..."})  # doctest: +SKIP
        0
    """

    def __init__(self, timeout: float = 300.0) -> None:
        # Only the test side imports this (relatively); the script itself runs as the server.
        from .server_process import ServerProcess

        self.server = ServerProcess(__file__, "the training server", timeout)

    def start(self, spec: dict) -> int:
        """Fork a child running ``spec``; return its pid."""
        self.server.send(spec)
        word, pid = self.server.readline().split()
        assert word == "pid"
        return int(pid)

    def wait(self, pid: int) -> int:
        """The child's exit code: 0 when it finished, 1 on an error, -9 when SIGKILL ended it."""
        word, reported, status = self.server.readline().split()
        assert (word, int(reported)) == ("exit", pid)
        return os.waitstatus_to_exitcode(int(status))

    def run(self, spec: dict) -> int:
        return self.wait(self.start(spec))

    def close(self) -> None:
        self.server.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        run(json.loads(sys.argv[2]))
