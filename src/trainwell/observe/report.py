"""The run report: one self-contained HTML page with everything about a run.

``report.html`` opens with no network: the CSS is inline, the learning curves are a base64 PNG,
and there are no scripts, fonts or links to fetch. It reads only the run directory's files
(metrics.jsonl, config.yaml, model.txt, confusion.json, curves.png), never the trainer.

    trainwell report runs/<name>          # also written at the end of every run with a run directory
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainwell.display import number, seconds
from trainwell.files.atomic import write_text
from trainwell.files.rundir import RunPaths
from trainwell.observe.doctor import Finding, diagnose
from trainwell.observe.records import RunRecords, monitor_of, read_run

# The metrics the summary table shows, in order, when the run has them.
SUMMARY_METRICS = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_f1",
    "val_precision",
    "val_recall",
    "val_mae",
    "val_rmse",
    "val_r2",
    "lr",
    "grad_norm",
    "epoch_time_s",
    "samples_per_s",
    "memory",
    "gpu_memory",
    "gpu_memory_reserved",
)
# At most this many events are listed; a run skipping thousands of steps needs no more to be understood.
MAX_EVENTS_SHOWN = 50

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.status { color: #555; } .status.failed { color: #b00020; font-weight: 600; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f8; }
.finding { border-left: 4px solid #e0a800; background: #fff8e1; padding: 0.5em 1em; margin: 0.6em 0; }
.finding.error { border-color: #b00020; background: #fdecee; } .healthy { border-left: 4px solid #2e7d32; background: #edf7ee; padding: 0.5em 1em; }
.finding .fix { margin-top: 0.3em; } img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f8; padding: 0.8em; overflow-x: auto; font-size: 13px; }
table.confusion td { text-align: center; min-width: 2.2em; } table.confusion th { text-align: center; }
.muted { color: #777; } table.kv td { text-align: left; }
"""


def write_report(run_dir: str | Path, out: str | Path | None = None, findings: Sequence[Finding] | None = None) -> Path:
    """Write the run's self-contained HTML report (atomically).

    Args:
        run_dir: The run directory.
        out: Where to write; None writes ``report.html`` into the run directory.
        findings: The doctor's findings when already computed; None runs the doctor.

    Returns:
        The path written.

    Raises:
        ConfigError: ``run_dir`` does not exist or holds no metrics.jsonl.

    Example:
        >>> write_report("runs/20250101-120000")  # doctest: +SKIP
        PosixPath('runs/20250101-120000/report.html')
    """
    run = read_run(run_dir)
    out = Path(out) if out is not None else RunPaths(run.path).report
    page = render_report(run, diagnose(run) if findings is None else list(findings))
    write_text(out, page)
    return out


def render_report(run: RunRecords, findings: Sequence[Finding]) -> str:
    """The report of ``run`` as one HTML string."""
    sections = [
        f"<h1>Run {_e(run.name)}</h1>",
        _status(run),
        "<h2>Diagnosis</h2>",
        _findings(findings),
        "<h2>Metrics</h2>",
        _summary(run),
        "<h2>Learning curves</h2>",
        _curves(run),
    ]
    confusion = _confusion(run.path)
    if confusion:
        sections += ["<h2>Confusion matrix</h2>", confusion]
    if run.events:
        sections += ["<h2>Events</h2>", _events(run.events)]
    sections += ["<h2>System</h2>", _key_values(run.run_info) or '<p class="muted">No system information recorded.</p>']
    sections += ["<h2>Configuration</h2>", _key_values(run.config) or '<p class="muted">No config.yaml.</p>']
    model = _read(RunPaths(run.path).model_summary)
    sections += ["<h2>Model</h2>", f"<pre>{_e(model)}</pre>" if model else '<p class="muted">No model.txt.</p>']
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>trainwell report: {_e(run.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _status(run: RunRecords) -> str:
    epochs = len(run.epochs)
    total = sum(r.get("epoch_time_s") or 0 for r in run.epochs)
    planned = run.config.get("epochs")
    done = f"{epochs} epoch{'s' if epochs != 1 else ''}" + (f" of {planned}" if planned else "") + f" in {seconds(total)}"
    failure = run.failure
    if failure is not None:
        message = str(failure.get("message", "")).splitlines()[0][:300] if failure.get("message") else ""
        return f'<p class="status failed">Failed with {_e(failure.get("type"))} after {_e(done)}: {_e(message)}</p>'
    stopped = " (stopped early)" if planned and epochs < planned else ""
    return f'<p class="status">Finished {_e(done)}{stopped}.</p>'


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return '<div class="healthy">No problems found.</div>'
    blocks = []
    for finding in findings:
        blocks.append(
            f'<div class="finding {_e(finding.severity)}"><strong>{_e(finding.severity.upper())}: {_e(finding.title)}</strong>'
            f'<div>{_e(finding.evidence)}</div><div class="fix"><strong>Fix:</strong> {_e(finding.fix)}</div></div>'
        )
    return "\n".join(blocks)


def _summary(run: RunRecords) -> str:
    if not run.epochs:
        return '<p class="muted">No epoch finished.</p>'
    monitor = monitor_of(run)
    index = monitor.best_index([row.get(monitor.metric) for row in run.epochs])
    columns = []
    if index is not None:
        best = run.epochs[index]
        columns.append((f"best by {monitor.metric} (epoch {best.get('epoch')})", best))
    final = run.epochs[-1]
    if not columns or columns[0][1] is not final:
        columns.append((f"final (epoch {final.get('epoch')})", final))
    metrics = [m for m in SUMMARY_METRICS if any(m in row for _, row in columns)]
    # Validation metrics a run chose beyond the usual ones (val_top5, val_perplexity ...), after them.
    chosen = sorted({m for _, row in columns for m in row if m.startswith("val_") and m not in SUMMARY_METRICS})
    at = next((i for i, m in enumerate(metrics) if m != "train_loss" and not m.startswith("val_")), len(metrics))
    metrics[at:at] = chosen
    head = "<tr><th>metric</th>" + "".join(f"<th>{_e(label)}</th>" for label, _ in columns) + "</tr>"
    rows = [
        f"<tr><td>{_e(m)}</td>" + "".join(f"<td>{_e(_cell(m, row.get(m)))}</td>" for _, row in columns) + "</tr>"
        for m in metrics
    ]
    return "<table>" + head + "".join(rows) + "</table>"


def _curves(run: RunRecords) -> str:
    png = RunPaths(run.path).curves
    if png.is_file():
        data = png.read_bytes()
    else:
        from trainwell.observe.curves import render_curves

        data = render_curves([run])
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img id="curves" alt="learning curves: loss, validation metric and learning rate by epoch" src="data:image/png;base64,{encoded}">'


def _confusion(run_dir: Path) -> str:
    text = _read(RunPaths(run_dir).confusion)
    if not text:
        return ""
    try:
        data = json.loads(text)
        matrix = [[int(c) for c in row] for row in data["matrix"]]
    except (ValueError, KeyError, TypeError):
        return '<p class="muted">confusion.json could not be read.</p>'
    labels = data.get("labels") or list(range(len(matrix)))
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{_e(label)}</th>" for label in labels) + "</tr>"
    rows = []
    for row_index, (label, row) in enumerate(zip(labels, matrix)):
        total = sum(row) or 1
        cells = []
        for column, count in enumerate(row):
            share = count / total
            # Blue for correct predictions, red for mistakes, deeper for a larger share of the row.
            hue = "33, 102, 172" if column == row_index else "178, 24, 43"
            cells.append(f'<td style="background: rgba({hue}, {0.08 + 0.8 * share if count else 0:.2f})">{count}</td>')
        rows.append(f"<tr><th>{_e(label)}</th>" + "".join(cells) + "</tr>")
    caption = f"Validation samples, epoch {_e(data.get('epoch'))} ({_e(data.get('weights', 'best'))} weights); rows: true label, columns: predicted."
    return f'<p class="muted">{caption}</p><table class="confusion">' + head + "".join(rows) + "</table>"


def _events(events: list[dict[str, Any]]) -> str:
    rows = []
    for event in events[:MAX_EVENTS_SHOWN]:
        # A failure's message is the report's first line; the table names it only.
        shown = {k: v for k, v in event.items() if k not in ("event", "epoch", "step")}
        if event.get("event") == "exception":
            shown.pop("message", None)
        details = ", ".join(f"{k}={_plain(v)}" for k, v in shown.items())
        rows.append(
            f"<tr><td>{_e(event.get('event'))}</td><td>{_e(event.get('epoch'))}</td><td>{_e(event.get('step'))}</td><td>{_e(details[:300])}</td></tr>"
        )
    more = (
        f'<p class="muted">and {len(events) - MAX_EVENTS_SHOWN} more in metrics.jsonl.</p>'
        if len(events) > MAX_EVENTS_SHOWN
        else ""
    )
    return (
        "<table><tr><th>event</th><th>epoch</th><th>step</th><th>details</th></tr>" + "".join(rows) + "</table>" + more
    )


def _key_values(values: dict[str, Any]) -> str:
    if not values:
        return ""
    rows = "".join(f"<tr><td>{_e(key)}</td><td>{_e(_plain(value))}</td></tr>" for key, value in values.items())
    return f'<table class="kv">{rows}</table>'


def _cell(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if metric in ("memory", "gpu_memory", "gpu_memory_reserved") and isinstance(value, (int, float)):
        return f"{number(round(value / 2**20))} MiB"
    if metric == "epoch_time_s" and isinstance(value, (int, float)):
        return seconds(value)
    if metric == "samples_per_s" and isinstance(value, (int, float)):
        return number(round(value))
    return number(value) if isinstance(value, (int, float)) else str(value)


def _plain(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "-" if value is None else str(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
