"""``trainwell bench precision``: the same training in fp32, bf16 (and fp16 on CUDA), side by side."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainwell.commands.options import add_device_option, positive_int

WORKLOADS = ("mlp-784", "mlp-tabular", "cnn", "lstm", "transformer")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "bench",
        help="measure what the hardware gains from mixed precision",
        description="Benchmarks that help choose settings for this machine.",
    )
    kinds = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    precision = kinds.add_parser(
        "precision",
        help="train the same model in fp32, bf16 (and fp16 with a GradScaler on CUDA); compare speed and loss",
        description=(
            "Train the same model for a fixed number of steps in each precision the device supports, "
            "interleaved over a few rounds, and print samples/s, the speed-up over fp32 and the final loss."
        ),
    )
    precision.add_argument("--model", choices=WORKLOADS, default="mlp-784", help="workload to train (default mlp-784)")
    precision.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="batch size (default 256)")
    precision.add_argument("--steps", type=positive_int, default=200, metavar="N", help="steps per precision and round (default 200)")
    precision.add_argument("--rounds", type=positive_int, default=3, metavar="N", help="interleaved rounds; the median is kept (default 3)")
    add_device_option(precision)
    precision.set_defaults(handler=run_precision)


def run_precision(args: argparse.Namespace) -> int:
    from trainwell.bench import compare_precisions, format_precision_table, native_bf16_cpu
    from trainwell.system import resolve_device

    device = resolve_device(args.device)
    print(f"{args.model}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds on {device}:\n")
    results = compare_precisions(args.model, args.batch_size, args.steps, str(device), args.rounds)
    print(format_precision_table(results))
    bf16 = next(result for result in results if result.precision == "bf16")
    if device.type == "cpu" and native_bf16_cpu() is False:
        print(
            "\nWarning: this CPU has no native bf16 (AVX512-BF16 or AMX): autocast to bf16 is emulated "
            "and usually slower than fp32. Keep precision='fp32' here.",
            file=sys.stderr,
        )
    elif bf16.speedup < 1.0:
        print(f"\nNote: bf16 was slower than fp32 here ({bf16.speedup:.2f}x): keep precision='fp32' on this device.", file=sys.stderr)
    return 0

