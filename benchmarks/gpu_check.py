"""The GPU check: the suite's loop comparison and the precision comparison on CUDA, in minutes.

    python benchmarks/gpu_check.py                     # writes benchmarks/gpu_results.md
    python benchmarks/gpu_check.py --out results.md --rounds 2

For each workload at batch 64 and 256: samples/s of the careful loop, the tutorial loop and
``trainwell.fit`` (defaults: bf16 autocast where the GPU supports it), plus ``trainwell.fit``
with ``precision="fp32"`` for a like-for-like loop comparison; then ``trainwell bench precision``
on the MLP at batch 256 (fp32, bf16, fp16 with a GradScaler); then several processes: with 2 or
more GPUs, samples/s on 1 GPU and on 2 (DDP, FSDP; NCCL), with one GPU, FSDP2 on it (a process
group of one): training equal to the plain model and a sharded checkpoint read back. Designed
to finish in under 5 minutes on one modern GPU; exits with a message when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import careful, tutorial, with_trainwell  # noqa: E402

from trainwell.bench import compare_precisions, format_precision_table, workloads  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "gpu_results.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU.", file=sys.stderr)
        return 1
    started = time.perf_counter()
    device = "cuda"
    contenders = {
        "careful loop": lambda w, b, e, s: careful(w, b, e, s, device=device),
        "tutorial loop": lambda w, b, e, s: tutorial(w, b, e, s, device=device),
        "trainwell.fit (fp32)": lambda w, b, e, s: with_trainwell(w, b, e, s, device=device, precision="fp32"),
        "trainwell.fit (auto)": lambda w, b, e, s: with_trainwell(w, b, e, s, device=device),
    }
    lines = [
        f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}",
        "",
        "| workload | batch | " + " | ".join(contenders) + " |",
        "|---|---:|" + "---:|" * len(contenders),
    ]
    for work in workloads():
        for batch_size in (64, 256):
            speeds = {name: [] for name in contenders}
            ratios = {name: [] for name in contenders}
            for round_index in range(args.rounds):
                per_round = {}
                for name, train in contenders.items():
                    per_round[name] = work.samples / statistics.median(train(work, batch_size, 3, round_index)[1:])
                    speeds[name].append(per_round[name])
                for name in contenders:
                    ratios[name].append(per_round[name] / per_round["careful loop"])
            cells = [f"{statistics.median(speeds[n]):,.0f} ({statistics.median(ratios[n]):.2f}x)" for n in contenders]
            lines.append(f"| {work.name} | {batch_size} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    lines += ["", "Mixed precision, MLP 784-256-128-10, batch 256:", ""]
    lines.append(
        format_precision_table(compare_precisions("mlp-784", batch_size=256, steps=200, device=device, rounds=3))
    )
    lines += ["", *distributed_lines()]
    lines += ["", f"Total time: {time.perf_counter() - started:.0f} s"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-6:]))
    return 0


def distributed_lines() -> list[str]:
    """Several processes on GPUs: DDP and FSDP throughput on 2 GPUs, else FSDP's sharded path on the one GPU."""
    if torch.cuda.device_count() >= 2:
        return _two_gpus()
    try:
        return _one_gpu_sharded()
    except Exception as error:  # noqa: BLE001 - reported, so that the rest of the check is kept
        return [f"FSDP on one GPU failed: {type(error).__name__}: {error}"]


def _two_gpus() -> list[str]:
    """benchmarks/distributed.py's speed workload (MLP 784-1024-1024-10, global batch 256) on 1 and 2 GPUs (NCCL)."""
    import json
    import subprocess
    import tempfile

    from distributed import free_port

    lines = [
        "Several GPUs (NCCL), MLP 784-1024-1024-10, global batch 256:",
        "",
        "| setting | samples/s |",
        "|---|---:|",
    ]
    with tempfile.TemporaryDirectory() as root:
        for name, processes, strategy in (
            ("1 GPU", 1, "ddp"),
            ("2 GPUs (DDP)", 2, "ddp"),
            ("2 GPUs (FSDP)", 2, "fsdp"),
        ):
            out, spec = Path(root) / f"{name}.json", Path(root) / "spec.json"
            spec.write_text(
                json.dumps({"threads": 4, "strategy": strategy, "exchange": True, "out": str(out), "device": "cuda"})
            )
            worker = [str(HERE / "distributed.py"), "--worker", str(spec)]
            launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                        "--master-addr=127.0.0.1", f"--master-port={free_port()}"]  # fmt: skip
            command = [*launcher, *worker] if processes > 1 else [sys.executable, *worker]
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                lines.append(
                    f"| {name} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode} |"
                )
                continue
            speeds = json.loads(out.read_text())[1:]
            lines.append(f"| {name} | {statistics.median(speeds):,.0f} |")
    return lines


def _one_gpu_sharded() -> list[str]:
    """FSDP2 on the one GPU (a process group of one, NCCL): training steps equal to the plain model's, and a
    sharded checkpoint written and read back (pieces on the GPU, whole tensors on the CPU)."""
    import copy
    import tempfile

    from trainwell.distributed import shards
    from trainwell.distributed.session import Session
    from trainwell.models import Transformer

    with tempfile.TemporaryDirectory() as root:
        torch.distributed.init_process_group("nccl", init_method=f"file://{root}/store", rank=0, world_size=1)
        try:
            session = Session(0, 0, 1, torch.device("cuda", 0), "nccl", created_group=False)
            session.use_strategy("fsdp")
            torch.manual_seed(0)
            model = Transformer(10, vocab_size=1000, d_model=256, num_heads=8, num_layers=4, dropout=0.0)
            plain = copy.deepcopy(model).cuda()
            sharded = session.wrap(session.place(model))
            optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (plain, sharded)]
            tokens = torch.randint(1, 1000, (32, 64), device="cuda")
            labels = torch.randint(0, 10, (32,), device="cuda")
            for _ in range(20):
                for module, optimizer in zip((plain, sharded), optimizers):
                    torch.nn.functional.cross_entropy(module(tokens), labels).backward()
                    optimizer.step()
                    optimizer.zero_grad()
            whole = {k: v.full_tensor() for k, v in sharded.state_dict().items()}
            difference = max((whole[k] - v).abs().max().item() for k, v in plain.state_dict().items())
            path = shards.write(
                session, Path(root) / "step-000000020.dcp", {"model_state_dict": sharded.state_dict()}, step=20
            )
            back = shards.read(path, session)["model_state_dict"]
            on_cpu = shards.read(path, None)["model_state_dict"]
            read_back = max((back[k].full_tensor() - whole[k]).abs().max().item() for k in whole)
            read_whole = max((on_cpu[k] - whole[k].cpu()).abs().max().item() for k in whole)
        finally:
            torch.distributed.destroy_process_group()
    return [
        "FSDP2 on one GPU (a process group of one, NCCL), Transformer d_model 256 x 4 layers, 20 AdamW steps:",
        f"- weights against the plain model: max difference {difference:.2e}",
        f"- sharded checkpoint read back in pieces: {read_back:.2e}; read whole on the CPU: {read_whole:.2e}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
