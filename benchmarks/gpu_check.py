"""The GPU check: the suite's loop comparison and the precision comparison on CUDA, in minutes.

    python benchmarks/gpu_check.py                     # writes benchmarks/gpu_results.md
    python benchmarks/gpu_check.py --out results.md --rounds 2

For each workload at batch 64 and 256: samples/s of the careful loop, the tutorial loop and
``trainwell.fit`` (defaults: bf16 autocast where the GPU supports it), plus ``trainwell.fit``
with ``precision="fp32"`` for a like-for-like loop comparison; then ``trainwell bench precision``
on the MLP at batch 256 (fp32, bf16, fp16 with a GradScaler). Designed to finish in under
5 minutes on one modern GPU; exits with a message when no CUDA device is present.
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
    lines.append(format_precision_table(compare_precisions("mlp-784", batch_size=256, steps=200, device=device, rounds=3)))
    lines += ["", f"Total time: {time.perf_counter() - started:.0f} s"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-6:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
