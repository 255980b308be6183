"""Learning curves: train and validation loss, the validation metric and the LR schedule.

:func:`render_curves` draws one or several runs into a PNG (several runs are overlaid, one
colour per run, for comparison); :func:`plot_runs` reads run directories and writes the file.
matplotlib is imported only here and only when drawing, through its object-oriented API with
the Agg renderer, so no display and no global pyplot state is involved.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from trainwell.files.atomic import write_bytes
from trainwell.files.rundir import RunPaths
from trainwell.observe.records import RunRecords, monitor_of, read_run

# Validation metrics the middle panel shows, in order of preference, with their titles.
METRIC_PANELS = (
    ("val_accuracy", "validation accuracy"),
    ("val_f1", "validation F1"),
    ("val_mae", "validation MAE"),
    ("val_rmse", "validation RMSE"),
)

# A loss that spans more than this factor is drawn on a log scale, where both ends stay readable.
LOG_SCALE_SPAN = 30.0


def render_curves(runs: Sequence[RunRecords], dpi: int = 100) -> bytes:
    """Draw the runs' curves side by side (loss, validation metric, learning rate) as PNG bytes.

    Args:
        runs: One run, or several to overlay (each in its own colour, labelled by name).
        dpi: Resolution; the figure is 15 x 4.2 inches.

    Returns:
        The PNG file's bytes.

    Example:
        >>> from trainwell.observe.records import RunRecords
        >>> run = RunRecords.from_records([{"event": "epoch", "epoch": 1, "train_loss": 1.0, "lr": 0.1}])
        >>> render_curves([run])[:4]
        b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2), dpi=dpi)
    # A fixed layout: matplotlib's automatic ones cost more than the drawing itself.
    figure.subplots_adjust(left=0.045, right=0.985, bottom=0.12, top=0.91, wspace=0.2)
    loss_axes, metric_axes, lr_axes = figure.subplots(1, 3)
    several = len(runs) > 1
    metric, metric_title = _metric_of(runs)
    for index, run in enumerate(runs):
        colour = f"C{index}" if several else None
        prefix = f"{run.name} " if several else ""
        epochs = run.series("epoch")
        _line(loss_axes, epochs, run.series("train_loss"), colour or "C0", "-", f"{prefix}train")
        if run.has("val_loss"):
            val_loss = run.series("val_loss")
            _line(loss_axes, epochs, val_loss, colour or "C1", "--", f"{prefix}validation")
            monitor = monitor_of(run)
            best = monitor.best_index([row.get(monitor.metric) for row in run.epochs])
            if best is not None:
                loss_axes.plot(
                    [epochs[best]], [val_loss[best]], marker="*", markersize=12, color=colour or "C1", linestyle="none"
                )
        if metric is not None and run.has(metric):
            _line(metric_axes, epochs, run.series(metric), colour or "C2", "-", prefix.strip() or None)
        positions, rates = _lr_schedule(run)
        # A run that failed early may have one lr point: a marker shows it where a line would not.
        marker = "o" if len(rates) == 1 else None
        lr_axes.plot(positions, rates, color=colour or "C3", marker=marker, label=prefix.strip() or None)
    loss_axes.set(title="loss (★ best epoch)" if any(r.has("val_loss") for r in runs) else "loss", xlabel="epoch")
    if _span(runs) > LOG_SCALE_SPAN:
        loss_axes.set_yscale("log")
    loss_axes.legend(fontsize="small")
    metric_axes.set(title=metric_title, xlabel="epoch")
    if metric is None:
        metric_axes.text(0.5, 0.5, "no validation metrics", ha="center", va="center", transform=metric_axes.transAxes)
    lr_axes.set(title="learning rate", xlabel="epoch")
    if not any(_lr_schedule(run)[1] for run in runs):
        lr_axes.text(0.5, 0.5, "no lr recorded", ha="center", va="center", transform=lr_axes.transAxes)
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for axes in (loss_axes, metric_axes, lr_axes):
        axes.grid(alpha=0.3)
    if several:
        for axes in (metric_axes, lr_axes):
            if axes.get_legend_handles_labels()[0]:
                axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Read run directories and write their curves to a PNG (written atomically).

    Args:
        run_dirs: One or more run directories.
        out: The PNG to write; None writes ``curves.png`` into the run directory for one run,
            and into the current directory for several.

    Returns:
        The path written.

    Raises:
        ConfigError: a run directory does not exist or holds no metrics.jsonl.

    Example:
        >>> plot_runs(["runs/a", "runs/b"], "compare.png")  # doctest: +SKIP
    """
    runs = [read_run(run_dir) for run_dir in run_dirs]
    if out is None:
        out = RunPaths(runs[0].path).curves if len(runs) == 1 else Path(RunPaths(Path()).curves.name)
    out = Path(out)
    write_bytes(out, render_curves(runs))
    return out


def _metric_of(runs: Sequence[RunRecords]) -> tuple[str | None, str]:
    for key, title in METRIC_PANELS:
        if any(run.has(key) for run in runs):
            return key, title
    # Otherwise the first other validation metric the run chose (val_top5, val_perplexity ...).
    for run in runs:
        for key in (key for row in run.epochs for key in row):
            if key.startswith("val_") and key != "val_loss":
                return key, "validation " + key.removeprefix("val_")
    return None, "validation metric"


def _line(axes, x: list[float], y: list[float], colour: str, style: str, label: str | None) -> None:
    # Markers keep single epochs, and epochs between non-finite gaps, visible.
    axes.plot(x, y, color=colour, linestyle=style, marker="o", markersize=3, label=label)


def _span(runs: Sequence[RunRecords]) -> float:
    values = [v for run in runs for key in ("train_loss", "val_loss") for v in run.series(key) if math.isfinite(v)]
    if not values or min(values) <= 0:
        return 1.0
    return max(values) / min(values)


def _lr_schedule(run: RunRecords) -> tuple[list[float], list[float]]:
    """The learning rate over the run, at step resolution where step records exist.

    Positions are in epochs: step records at ``step / steps_per_epoch``, epoch records at the
    end of their epoch.
    """
    steps_per_epoch = run.run_info.get("steps_per_epoch")
    if not steps_per_epoch:
        first = next((r for r in run.epochs if r.get("step") and r.get("epoch")), None)
        steps_per_epoch = first["step"] / first["epoch"] if first else None
    points = []
    if steps_per_epoch:
        points += [(r["step"] / steps_per_epoch, r.get("lr")) for r in run.steps if r.get("step") is not None]
    points += [(float(r.get("epoch", 0)), r.get("lr")) for r in run.epochs]
    points = sorted((x, float(lr)) for x, lr in points if isinstance(lr, (int, float)))
    return [x for x, _ in points], [lr for _, lr in points]
