"""Data-parallel training runs for tests/distributed/, each in a group of forked processes or under torchrun.

    python tests/distributed_children.py serve      # imports torch and trainwell once, then reads one
                                                    # job per stdin line: {"world": N, "port": P, "spec": {...}},
                                                    # forks N children with torchrun's variables set
                                                    # (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1,
                                                    # MASTER_PORT=P), waits for them and prints their exit codes
    torchrun ... tests/distributed_children.py worker SPEC.json
                                                    # one process of a group torchrun started (its rank from RANK)

A job with ``"world": 1`` runs one child without those variables (a single-process reference).
Forking from a process that has only imported modules gives each child the state of a fresh
interpreter without paying for the torch import (as ``child_training.py`` does for one process).

A spec (JSON) holds ``out`` (a directory: each process writes ``rank<R>.pt``, its final weights,
and ``rank<R>.json``: history, events, run_info, the error it ended with, gradient all-reduces
counted) and optionally: ``run_dir``, ``loader`` ("tensor", "dataloader", or
"dataloader_distributed_sampler" for a one-process reference that samples as the shards do),
``batch_size``, ``epochs``, ``dropout``, ``options`` (more fit options), ``rank_options``
({rank: options} for one process only), ``rank_batch_size`` ({rank: batch size}), ``resume``,
``signal`` ([rank, step]: that process sends itself SIGTERM after that step), ``oom`` ([rank,
step]: that process's model raises an out-of-memory error once, in that step's forward),
``count_allreduces`` (count DDP's gradient all-reduces with a communication hook), ``batch_norm``
(a BatchNorm1d after the first layer), ``stop`` ([rank, epoch]: a callback of that process alone
sets ``should_stop`` at the end of that epoch), ``bad_steps`` (global steps whose
training loss is NaN in every process), ``val_samples`` and ``val_batch_size`` (the
validation set's first samples, and its batch size), ``model`` ("transformer": a 2-layer Transformer
reading each sample as 4 positions of 2 features), ``pause`` ([rank, step]: in the first attempt
under torchrun, that process writes its pid to ``out/paused`` after that step and waits to be
killed), ``kill_in_save`` ([rank, "fsync" or "rename", n]: that process SIGKILLs itself at its
n-th fsync, before it, or right after its n-th rename of a sharded checkpoint into place).
Every process writes its pid to ``out/pids/<attempt>-<rank>`` first, so that a test can always
clean up.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

TRAIN, VAL, FEATURES = 256, 60, 8

# The options the tests compare runs with: two processes of 16 samples per batch against one of 32
# are the same global batches. The reference batch of 32 makes the lr scaling rule part of the
# comparison (scaled for the per-process batch, the lr would be sqrt(2) lower and the weights
# would differ).
COMPARED = {
    "reference_batch_size": 32,
    "early_stopping_patience": None,
    "restore_best_weights": False,
    "seed": 0,
    "log_every_steps": 3,
}


def rank_weights(out: Path, rank: int = 0) -> dict:
    """The final weights process ``rank`` wrote to ``out`` (``rank<R>.pt``)."""
    import torch

    return torch.load(out / f"rank{rank}.pt")


def rank_record(out: Path, rank: int = 0) -> dict:
    """What process ``rank`` wrote to ``out`` about its run (``rank<R>.json``): history, events, run_info, error."""
    return json.loads((out / f"rank{rank}.json").read_text())


def data():
    """A fixed 3-class problem: (train inputs, train targets, val inputs, val targets)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(TRAIN + VAL, FEATURES, generator=generator)
    targets = (inputs[:, 0] + inputs[:, 1] > 0).long() + (inputs[:, 2] > 1).long()
    return inputs[:TRAIN], targets[:TRAIN], inputs[TRAIN:], targets[TRAIN:]


def model(dropout: float = 0.0, batch_norm: bool = False, kind: str = "mlp"):
    import torch
    from torch import nn

    torch.manual_seed(1)
    if kind == "transformer":
        from trainwell.models import Transformer

        return Transformer(
            3, input_size=2, d_model=16, num_heads=2, num_layers=2, dim_feedforward=32, dropout=dropout, max_len=4
        )
    layers = [nn.Linear(FEATURES, 32), *([nn.BatchNorm1d(32)] if batch_norm else []), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(32, 3))


def run(spec: dict, rank: int) -> int:
    import logging

    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    import trainwell
    from trainwell.callbacks import Callback
    from trainwell.data import TensorLoader

    # train.log gets trainwell's info lines; the console none (a handler of its own keeps trainwell's away).
    logging.getLogger("trainwell").addHandler(logging.NullHandler())
    torch.set_num_threads(1)
    out = Path(spec["out"])
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    (out / "pids").mkdir(parents=True, exist_ok=True)
    (out / "pids" / f"{attempt}-{rank}").write_text(str(os.getpid()))
    train_x, train_y, val_x, val_y = data()
    if spec.get("model") == "transformer":  # 4 positions of 2 features each
        train_x, val_x = train_x.view(-1, 4, 2), val_x.view(-1, 4, 2)
    batch_size = spec.get("rank_batch_size", {}).get(str(rank), spec.get("batch_size", 16))
    kind = spec.get("loader", "tensor")
    if kind == "tensor":
        train_loader = TensorLoader(train_x, train_y, batch_size=batch_size, seed=3)
        kept = spec.get("val_samples", VAL)  # 59 in batches of 29: 2 batches for rank 0, 1 for rank 1
        val_loader = TensorLoader(val_x[:kept], val_y[:kept], batch_size=spec.get("val_batch_size", 16), shuffle=False)
    else:
        dataset = TensorDataset(train_x, train_y)
        if kind == "dataloader_distributed_sampler":
            sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=spec["options"]["seed"])
            train_loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
        else:
            train_loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
        val_loader = DataLoader(TensorDataset(val_x, val_y), batch_size=16)
    network = model(spec.get("dropout", 0.0), spec.get("batch_norm", False), spec.get("model", "mlp"))
    record: dict = {"allreduces": 0}
    poisoned = {"now": False}

    def scripted_loss(outputs, targets):
        loss = torch.nn.functional.cross_entropy(outputs, targets)
        return loss * math.nan if poisoned["now"] and torch.is_grad_enabled() else loss

    class Probe(Callback):
        def on_train_begin(self, trainer, **kwargs):
            session = trainer.distributed
            if spec.get("count_allreduces") and session is not None:
                from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

                def counted(state, bucket):
                    record["allreduces"] += 1
                    return allreduce_hook(state, bucket)

                session.ddp.register_comm_hook(None, counted)

        def on_batch_begin(self, trainer, batch_index, **kwargs):
            poisoned["now"] = trainer.global_step in spec.get("bad_steps", ())

        def on_epoch_begin(self, trainer, epoch, **kwargs):
            # The one-process reference of a DistributedSampler: the trainer sets its epoch only when sharding.
            if trainer.distributed is None and isinstance(
                getattr(trainer.loader_position.loader, "sampler", None), DistributedSampler
            ):
                trainer.loader_position.loader.sampler.set_epoch(epoch - 1)

        def on_batch_end(self, trainer, batch_index, loss, **kwargs):
            if spec.get("signal") == [rank, trainer.global_step]:
                os.kill(os.getpid(), signal.SIGTERM)
            if spec.get("pause") == [rank, trainer.global_step] and attempt == "0":
                (out / "paused").write_text(str(os.getpid()))
                time.sleep(600)  # until the test kills this process

        def on_epoch_end(self, trainer, epoch, metrics, **kwargs):
            if spec.get("stop") == [rank, epoch]:
                trainer.should_stop = True

    if spec.get("oom"):
        oom_rank, oom_step = spec["oom"]
        forward, state = network.forward, {"raised": False, "calls": 0}

        def failing_forward(inputs):
            if network.training and torch.is_grad_enabled():
                state["calls"] += 1
                if rank == oom_rank and state["calls"] == oom_step and not state["raised"]:
                    state["raised"] = True
                    raise torch.OutOfMemoryError("simulated: out of memory")
            return forward(inputs)

        network.forward = failing_forward

    if spec.get("kill_in_save") and spec["kill_in_save"][0] == rank:
        _kill_in_save(*spec["kill_in_save"][1:])
    options = {"epochs": spec.get("epochs", 2), "progress": False, "seed": 0, **spec.get("options", {})}
    options.update(spec.get("rank_options", {}).get(str(rank), {}))
    if spec.get("bad_steps"):
        options["loss_fn"] = scripted_loss
    if spec.get("run_dir"):
        options["run_dir"] = spec["run_dir"]
    trainer = trainwell.Trainer(callbacks=[Probe()], **options)
    try:
        result = trainer.fit(network, train_loader, val_loader, resume=spec.get("resume"))
        record.update(history=result.history, best_checkpoint=str(result.best_checkpoint))
        code = 0
    except trainwell.TrainwellError as error:
        record.update(
            error=type(error).__name__, message=str(error), checkpoint=str(getattr(error, "checkpoint", None))
        )
        code = 3
    record.update(events=trainer.events, run_info=trainer.run_info, step=trainer.global_step)
    record.update(place={name: os.environ.get(name) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK")})
    record.update(unwrapped=trainer.model is trainer.module, group_left=not torch.distributed.is_initialized())
    torch.save(network.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    return code


def _kill_in_save(operation: str, count: int) -> None:
    """SIGKILL this process at its ``count``-th fsync (before it), or right after its ``count``-th rename of a ``.dcp``."""
    calls = [0]
    original = getattr(os, "fsync" if operation == "fsync" else "replace")

    def counted(*args, **kwargs):
        if operation == "rename" and not str(args[1]).endswith(".dcp"):
            return original(*args, **kwargs)
        calls[0] += 1
        if operation == "fsync" and calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if operation == "rename" and calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, "fsync" if operation == "fsync" else "replace", counted)


def worker(spec_file: str) -> None:
    """One process of a group torchrun started: ``run`` with the rank torchrun gave it."""
    import ctypes

    # Never outlive the torchrun agent that started this process (a test that kills the agent leaves no orphan).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    spec = json.loads(Path(spec_file).read_text())
    sys.exit(run(spec, int(os.environ["RANK"])))


def serve() -> None:
    # Imported once, before any fork, as child_training.serve does; no torch operation runs here.
    import numpy  # noqa: F401
    import tenacity  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch.distributed  # noqa: F401
    import torch.distributed.checkpoint  # noqa: F401
    import torch.distributed.fsdp  # noqa: F401
    import torch.nn.parallel  # noqa: F401
    import yaml  # noqa: F401

    import trainwell.distributed.session  # noqa: F401
    import trainwell.distributed.shards  # noqa: F401
    import trainwell.loop.trainer  # noqa: F401
    import trainwell.models  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        Path(job["spec"]["out"]).mkdir(parents=True, exist_ok=True)
        children = {}
        for rank in range(job["world"]):
            pid = os.fork()
            if pid == 0:
                if job["world"] > 1:
                    os.environ.update(
                        RANK=str(rank),
                        LOCAL_RANK=str(rank),
                        WORLD_SIZE=str(job["world"]),
                        LOCAL_WORLD_SIZE=str(job["world"]),
                        MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=str(job["port"]),
                    )
                try:
                    code = run(job["spec"], rank)
                except BaseException as error:  # report and exit; never return into the server loop
                    print(f"error {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                    code = 1
                sys.stderr.flush()
                os._exit(code)
            children[pid] = rank
        codes = _wait(children, deadline=time.monotonic() + job.get("timeout", 120))
        print(json.dumps(codes), flush=True)


def _wait(children: dict[int, int], deadline: float) -> list[int | None]:
    """Each child's exit code by rank; children still running at the deadline are killed (None: hung)."""
    codes: list[int | None] = [None] * len(children)
    running = dict(children)
    while running and time.monotonic() < deadline:
        for pid, rank in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[rank] = os.waitstatus_to_exitcode(status)
                del running[pid]
        time.sleep(0.02)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return codes


def torchrun(arguments: list[str], spec: dict, spec_file: Path, env: dict | None = None):
    """Start ``torchrun ARGUMENTS tests/distributed_children.py worker SPEC_FILE`` (end it with :func:`stop`)."""
    import subprocess

    spec_file.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "torch.distributed.run", *arguments, __file__, "worker", str(spec_file)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    log = open(spec_file.with_suffix(".log"), "w")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    process.log, process.spec_file, process.out = log, spec_file, Path(spec["out"])
    return process


def stop(processes: list, timeout: float) -> list[int | None]:
    """Wait for torchrun ``processes`` until ``timeout`` s in all, then end whatever is left; their exit codes.

    Left over: torchrun is asked to stop its processes (SIGTERM) and killed after 30 s; then each
    process that recorded its pid under ``out/pids`` and still runs this script for this spec is
    killed too, so that a failed test leaves no process behind.
    """
    deadline, codes = time.monotonic() + timeout, []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except Exception:  # noqa: BLE001 - a timeout: ended below
            codes.append(None)
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except Exception:  # noqa: BLE001
                process.kill()
                process.wait()
        process.log.close()
        for pid_file in process.out.glob("pids/*"):
            _kill_if_ours(int(pid_file.read_text()), process.spec_file)
    return codes


def _kill_if_ours(pid: int, spec_file: Path) -> None:
    """SIGKILL ``pid`` if it is still a worker of ``spec_file`` (a pid of an ended process may be reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"worker" in command and str(spec_file).encode() in command:
            os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass


class Launcher:
    """The test side of ``serve``: runs jobs of N processes from one server started once.

    Example:
        >>> launcher = Launcher()  # doctest: +SKIP
        >>> launcher.run(2, {"out": "..."})  # doctest: +SKIP
        [0, 0]
    """

    def __init__(self, timeout: float = 300.0) -> None:
        # Only the test side imports this (relatively); the script itself runs as the server.
        from .server_process import ServerProcess

        self.server = ServerProcess(__file__, "the launcher", timeout)

    def run(self, world: int, spec: dict, timeout: float = 120) -> list[int | None]:
        """Run ``spec`` in ``world`` processes; their exit codes by rank (0 done, 3 a TrainwellError, None hung)."""
        job = {"world": world, "port": free_port(), "spec": spec, "timeout": timeout}
        self.server.send(job)
        return json.loads(self.server.readline())

    def close(self) -> None:
        self.server.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2])
    else:
        serve()
