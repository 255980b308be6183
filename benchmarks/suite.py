"""The benchmark suite: trainwell against a careful loop, the tutorial loop, Lightning and Keras 3.

    pip install -e '.[bench]'                    # PyTorch Lightning and Keras 3 (optional contenders)
    python benchmarks/suite.py --write           # full run; rewrites benchmarks/RESULTS.md and the README table
    python benchmarks/suite.py --quick           # a smoke run with small data and one round

Sections:
1. Steady state: samples/s of each contender on each workload at two batch sizes. Each timing
   trains 3 epochs; the first epoch (warm-up) is dropped and the median of the others kept.
   Every contender runs right after a careful-loop run and is compared with it (the pair's ratio);
   the order of the contenders rotates round by round; medians over rounds.
2. End to end: a fresh process that imports, builds the 784-256-128-10 MLP, trains 3 epochs on
   8,000 in-memory samples at batch 64 and exits; wall time, median of interleaved repeats.
3. Imports: ``python -c "import X"`` wall time, median of repeats.
4. Time to accuracy on digits: wall time until validation accuracy reaches 0.97.
5. Mixed precision: ``trainwell bench precision`` on the MLP at batch 256.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import available  # noqa: E402

from trainwell.bench import compare_precisions, format_precision_table, native_bf16_cpu, workloads  # noqa: E402

BATCH_SIZES = (64, 256)
EPOCHS = 3
README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}[native_bf16_cpu()]
    return (
        f"{cpu} ({os.cpu_count()} cores, {bf16}), torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def steady_state(rounds: int, scale: float) -> str:
    contenders = available()
    names = list(contenders)
    lines = [
        "| workload | batch | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for work in workloads(scale):
        for batch_size in BATCH_SIZES:
            speeds: dict[str, list[float]] = {name: [] for name in names}
            ratios: dict[str, list[float]] = {name: [] for name in names}
            for round_index in range(rounds):
                # Each contender runs right after a careful-loop run of its own, and its ratio is to
                # that run: on a shared machine the speed drifts within a round, and a reference
                # timed next to the contender cancels most of the drift. The order rotates per round.
                others = [name for name in names if name != "careful loop"]
                shift = round_index % len(others)
                for name in others[shift:] + others[:shift]:
                    reference = work.samples / statistics.median(contenders["careful loop"](work, batch_size, EPOCHS, round_index)[1:])
                    speed = work.samples / statistics.median(contenders[name](work, batch_size, EPOCHS, round_index)[1:])
                    speeds["careful loop"].append(reference)
                    speeds[name].append(speed)
                    ratios[name].append(speed / reference)
                ratios["careful loop"].append(1.0)
            cells = [
                f"{statistics.median(speeds[name]):,.0f} ({statistics.median(ratios[name]):.2f}x)" for name in names
            ]
            lines.append(f"| {work.name} | {batch_size} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


END_TO_END_SCRIPTS = {
    "tutorial loop": """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x, y = torch.randn(8000, 784), torch.randint(0, 10, (8000,))
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for epoch in range(3):
    for bx, by in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(bx), by)
        loss.backward()
        optimizer.step()
""",
    "trainwell.fit": """
import torch
from torch import nn
import trainwell
from trainwell.data import TensorLoader
torch.manual_seed(0)
x, y = torch.randn(8000, 784), torch.randint(0, 10, (8000,))
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
trainwell.fit(model, TensorLoader(x, y, batch_size=64, seed=0), epochs=3, progress=False)
""",
    "Lightning": """
import logging, warnings
warnings.filterwarnings("ignore")
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning
logging.getLogger("lightning").setLevel(logging.ERROR)
torch.manual_seed(0)
x, y = torch.randn(8000, 784), torch.randint(0, 10, (8000,))
class Module(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    def training_step(self, batch, index):
        return nn.functional.cross_entropy(self.network(batch[0]), batch[1])
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)
trainer = lightning.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True))
""",
    "Keras 3 (torch)": """
import os
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
import keras
rng = np.random.default_rng(0)
x, y = rng.standard_normal((8000, 784), dtype=np.float32), rng.integers(0, 10, 8000)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                          keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer=keras.optimizers.AdamW(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=64, epochs=3, verbose=0)
""",
}


def _wall_time(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ, "KERAS_BACKEND": "torch"})
    return time.perf_counter() - started


def _timed_table(commands: dict[str, str], reference: str, repeats: int, header: str) -> str:
    """Wall time of each Python snippet in a fresh process, interleaved ``repeats`` times, median; ratios to ``reference``."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, code in commands.items():
            times[name].append(_wall_time(code))
    base = statistics.median(times[reference])
    lines = [header, "|---|---:|---:|"]
    for name in commands:
        median = statistics.median(times[name])
        lines.append(f"| {name} | {median:.2f} | {median / base:.2f}x |")
    return "\n".join(lines)


def end_to_end(repeats: int) -> str:
    scripts = {
        name: code for name, code in END_TO_END_SCRIPTS.items() if name in available() or name == "tutorial loop"
    }
    return _timed_table(scripts, "trainwell.fit", repeats, "| script | wall time (s) | vs trainwell |")


def imports(repeats: int) -> str:
    statements = {"import torch": "import torch", "import trainwell": "import trainwell", "from trainwell import fit": "from trainwell import fit"}
    if "Lightning" in available():
        statements["import lightning"] = "import lightning"
    if "Keras 3 (torch)" in available():
        statements["import keras (torch backend)"] = "import keras"
    commands = {f"`{name}`": code for name, code in statements.items()}
    return _timed_table(commands, "`import torch`", repeats, "| statement | wall time (s) | vs import torch |")


def time_to_accuracy(seeds: int, target: float = 0.97) -> str:
    """Seconds (and epochs) until validation accuracy first reaches ``target`` on digits."""
    import logging

    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import trainwell
    from trainwell.data import load_bundled
    from trainwell.models import MLP
    from trainwell.recipes import RunConfig, run

    logging.getLogger("trainwell").setLevel(logging.ERROR)

    class Clock(trainwell.Callback):
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.reached: tuple[float, int] | None = None

        def on_epoch_end(self, trainer, epoch, metrics, **kwargs) -> None:
            if self.reached is None and metrics.get("val_accuracy", 0) >= target:
                self.reached = (time.perf_counter() - self.started, epoch)
                trainer.should_stop = True

    def tutorial(seed: int) -> tuple[float, int] | None:
        splits = load_bundled("digits", seed=seed)
        torch.manual_seed(seed)
        model = MLP([64, 256, 128, 10], dropout=0.2)
        loader = DataLoader(TensorDataset(*splits.train), batch_size=64, shuffle=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        started = time.perf_counter()
        for epoch in range(1, 51):
            model.train()
            for batch_x, batch_y in loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(batch_x), batch_y).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(splits.val[0]).argmax(1) == splits.val[1]).float().mean().item()
            if accuracy >= target:
                return time.perf_counter() - started, epoch
        return None

    def recipe(seed: int) -> tuple[float, int] | None:
        clock = Clock()
        run(RunConfig(seed=seed, progress=False, run_dir=None), callbacks=[clock])
        return clock.reached

    lines = ["| contender | seconds to 0.97 (median) | epochs (median) | reached in |", "|---|---:|---:|---:|"]
    for name, fn in (("tutorial loop (AdamW 1e-3, same MLP)", tutorial), ("trainwell train recipe", recipe)):
        results = [fn(seed) for seed in range(seeds)]
        reached = [r for r in results if r is not None]
        seconds = f"{statistics.median(r[0] for r in reached):.2f}" if reached else "-"
        epochs = f"{statistics.median(r[1] for r in reached):g}" if reached else "-"
        lines.append(f"| {name} | {seconds} | {epochs} | {len(reached)}/{seeds} seeds |")
    return "\n".join(lines)


def precision(rounds: int, steps: int) -> str:
    return format_precision_table(compare_precisions("mlp-784", batch_size=256, steps=steps, device="cpu", rounds=rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds for steady state (default 5)")
    parser.add_argument("--quick", action="store_true", help="small data, one round: a smoke run, not a measurement")
    parser.add_argument("--write", action="store_true", help="rewrite benchmarks/RESULTS.md and the README's table")
    args = parser.parse_args()
    rounds, scale, repeats = (1, 0.1, 1) if args.quick else (args.rounds, 1.0, 5)

    sections = [f"Machine: {machine()}", f"Date: {time.strftime('%Y-%m-%d')}"]
    print(sections[0], flush=True)
    sections.append("### Steady state: samples/s (ratio to the careful loop)\n\n" + steady_state(rounds, scale))
    sections.append("### End to end: import, build, train 3 epochs, exit (fresh process)\n\n" + end_to_end(repeats))
    print(sections[-1], flush=True)
    sections.append("### Import time\n\n" + imports(repeats))
    print(sections[-1], flush=True)
    sections.append("### Time to 0.97 validation accuracy on digits\n\n" + time_to_accuracy(1 if args.quick else 5))
    print(sections[-1], flush=True)
    sections.append(
        "### Mixed precision on this CPU (MLP 784-256-128-10, batch 256)\n\n" + precision(1 if args.quick else 3, 20 if args.quick else 200)
    )
    print(sections[-1], flush=True)
    report = "\n\n".join(sections) + "\n"
    if args.write and not args.quick:
        write_results(report)


def write_results(report: str) -> None:
    header = "# Benchmark results\n\nRegenerate with `python benchmarks/suite.py --write` (see the docstring of benchmarks/suite.py).\n\n"
    (HERE / "RESULTS.md").write_text(header + report, encoding="utf-8")
    readme = HERE.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if start in text and end in text:
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: f"{start}\n{report}{end}", text)
        readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
