"""The doctor: reads a run's records and names the usual training problems, with the evidence
and a concrete fix.

Each rule is a pure function of a :class:`~trainwell.observe.records.RunRecords` that returns a
:class:`Finding` or None, so each can be tested on a synthetic history. The thresholds were set
on real runs of the bundled datasets (README, "The doctor"): the default ``trainwell train`` run
gets no finding, while a too-low lr, a model too small for the data, an over-large model and
non-finite losses each get theirs.

    trainwell doctor runs/<name>          # also run at the end of every run with a run directory
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainwell.display import number
from trainwell.observe.monitor import Monitor
from trainwell.observe.records import RunRecords, monitor_of, read_run

# Fewer epochs than this say too little about a trend to judge plateaus or underfitting.
MIN_EPOCHS_FOR_TRENDS = 4
# A plateau: over the first half of the run, train_loss fell by less than this share.
PLATEAU_MAX_FALL = 0.10
# Overfitting: after its best epoch, val_loss averaged at least this much above the best ...
OVERFIT_MIN_RISE = 0.20
# ... while train_loss fell by at least this share (a loss that only hovers is no overfitting) ...
OVERFIT_MIN_TRAIN_FALL = 0.10
# ... and the validation metric averaged worse than at the best epoch by more than this share
# (val_loss alone also rises when a model grows over-confident on a few samples while its
# decisions still improve; the default digits run does that).
OVERFIT_METRIC_TOLERANCE = 0.005
# A generalisation gap (classification): at the end, train_loss is at most this (the training
# batches are fitted almost perfectly: a mean probability of ~0.9 or more on the right class) ...
GAP_MAX_TRAIN_LOSS = 0.1
# ... while val_loss is at least this many nats higher and this many times higher ...
GAP_MIN_NATS = 0.3
GAP_MIN_RATIO = 4.0
# ... and val_accuracy, where recorded, is at most this (well below the near-1 training accuracy).
# Measured (benchmarks/doctor.py): the default digits runs end with gaps of 0.02-0.10 nats at val
# accuracy 0.978-0.986, the default run on 4,000 MNIST images 0.19 at 0.93; an unregularised
# 784-512-512-10 MLP on 300 of them 0.92 at 0.82.
GAP_MAX_VAL_ACCURACY = 0.95
# Underfitting: at the end, train_loss is no lower than val_loss and still above this share of
# the first epoch's train_loss.
UNDERFIT_MIN_REMAINING = 0.30
# A batch this large usually needs a larger lr than the one tuned for small batches.
LARGE_BATCH = 512
# Peak reserved GPU memory above this share of the device's memory is one batch from an OOM.
NEAR_OOM_SHARE = 0.95
# Regression targets whose mean or standard deviation exceeds this are far from the unit scale
# a network's outputs start at; a run that explains less than MIN_R2 of their variance is blamed on it.
TARGET_SCALE_LIMIT = 10.0
TARGET_SCALE_MIN_R2 = 0.5
# Early stopping before the lr fell to this share of its peak stopped an annealing schedule early
# (the share from which trainwell's own early stopping counts patience: loop/schedules.py).
ANNEALED_SHARE = 0.5

# Validation metrics the overfitting rule consults, and whether higher is better.
METRICS = (("val_accuracy", True), ("val_f1", True), ("val_r2", True), ("val_mae", False), ("val_rmse", False))


@dataclass
class Finding:
    """One problem the doctor found.

    Attributes:
        rule: The rule's name, e.g. ``"overfitting"``.
        severity: ``"error"`` (the run failed because of it) or ``"warning"``.
        title: The problem in a few words.
        evidence: What in the records shows it, with numbers.
        fix: What to change.
    """

    rule: str
    severity: str
    title: str
    evidence: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.title}: {self.evidence}\n  Fix: {self.fix}"


def nonfinite_loss(run: RunRecords) -> Finding | None:
    """Losses or gradients that became NaN or infinite (skipped steps, a non-finite epoch loss, divergence)."""
    skipped = sum(int(r.get("nonfinite_steps") or 0) for r in run.epochs)
    skip_events = [e for e in run.events if e.get("event") == "nonfinite_skip"]
    bad_epochs = [
        int(r["epoch"]) for r in run.epochs if any(_is_nonfinite(r, key) for key in ("train_loss", "val_loss"))
    ]
    failure = run.failure
    diverged = failure is not None and failure.get("type") == "DivergenceError"
    if not (skipped or skip_events or bad_epochs or diverged):
        return None
    parts = []
    if skipped or skip_events:
        first = skip_events[0] if skip_events else None
        where = f", the first at step {first.get('step')} (epoch {first.get('epoch')})" if first else ""
        parts.append(
            f"{max(skipped, len(skip_events))} optimizer step(s) skipped for a non-finite loss or gradient{where}"
        )
    if bad_epochs:
        parts.append(f"a non-finite epoch loss in epoch(s) {_list(bad_epochs)}")
    if diverged:
        # The error's first sentence only: its advice is the fix below, and the whole message is
        # shown where the run's failure is (the console, the report's first line).
        message = str(failure.get("message") or "DivergenceError").splitlines()[0]
        parts.append(f"training stopped: {message.split('. ')[0].rstrip('.')}")
    lr = run.run_info.get("peak_lr", run.config.get("lr"))
    clip = run.config.get("max_grad_norm", "unknown")
    fixes = [
        f"lower the lr (peak {_g(lr)}; try {_g(lr / 10)})"
        if isinstance(lr, (int, float))
        else "lower the lr (try 10x lower)"
    ]
    fixes.append(
        "enable gradient clipping (max_grad_norm=1.0)" if clip is None else f"clip harder (max_grad_norm now {clip})"
    )
    if run.run_info.get("precision") == "fp16" or run.config.get("precision") == "fp16":
        fixes.append("train in bf16 or fp32 instead of fp16")
    fixes.append("check the inputs and targets for NaN or inf")
    return Finding(
        "nonfinite_loss",
        "error" if diverged else "warning",
        "non-finite loss",
        "; ".join(parts) + ".",
        _sentence(fixes),
    )


def loss_plateau(run: RunRecords) -> Finding | None:
    """The training loss barely moved over the first half of the run: the lr is likely too low."""
    train = run.series("train_loss")
    if len(train) < MIN_EPOCHS_FOR_TRENDS or not math.isfinite(train[0]) or train[0] <= 0:
        return None
    half = math.ceil(len(train) / 2)
    best = min((v for v in train[1:half] if math.isfinite(v)), default=math.nan)
    if not math.isfinite(best):
        return None
    fall = 1 - best / train[0]
    if fall >= PLATEAU_MAX_FALL:
        return None
    lr = run.run_info.get("peak_lr", run.config.get("lr"))
    raise_lr = (
        f"raise the lr (peak {_g(lr)}; try 3-10x higher)"
        if isinstance(lr, (int, float))
        else "raise the lr (try 3-10x higher)"
    )
    fixes = [
        raise_lr,
        "or let the LR finder pick one (trainwell lr-find, trainwell train --lr auto, trainwell.find_lr)",
    ]
    if run.config.get("schedule") == "constant":
        fixes.append("and use a schedule with warm-up (schedule='onecycle')")
    return Finding(
        "loss_plateau",
        "warning",
        "the loss plateaued early",
        f"train_loss fell only {fall:.0%} over the first {half} epochs ({number(train[0])} -> {number(best)}).",
        _sentence(fixes),
    )


def overfitting(run: RunRecords) -> Finding | None:
    """val_loss rose after its best epoch while train_loss kept falling, and the validation metric got worse."""
    val, train = run.series("val_loss"), run.series("train_loss")
    best = Monitor("val_loss").best_index(val)
    if best is None or len(val) - best - 1 < 2:
        return None
    after = [v for v in val[best + 1 :] if math.isfinite(v)]
    rise = _mean(after) / val[best] - 1 if val[best] > 0 and after else 0.0
    train_fell = (
        math.isfinite(train[-1])
        and math.isfinite(train[best])
        and train[-1] <= train[best] * (1 - OVERFIT_MIN_TRAIN_FALL)
    )
    if rise < OVERFIT_MIN_RISE or not train_fell:
        return None
    metric_note = ""
    for key, higher_is_better in METRICS:
        values = run.series(key)
        if not math.isfinite(values[best]):
            continue
        at_best, later = values[best], _mean([v for v in values[best + 1 :] if math.isfinite(v)])
        worse = (
            later < at_best * (1 - OVERFIT_METRIC_TOLERANCE)
            if higher_is_better
            else later > at_best * (1 + OVERFIT_METRIC_TOLERANCE)
        )
        if not worse:
            return None
        metric_note = f", and {key} averaged {number(later)} after it against {number(at_best)} at its best epoch"
        break
    best_epoch = int(run.epochs[best]["epoch"])
    evidence = (
        f"val_loss was lowest at epoch {best_epoch} ({number(val[best])}) and averaged {rise:.0%} higher over the "
        f"{len(val) - best - 1} epochs after it, while train_loss fell from {number(train[best])} to {number(train[-1])}{metric_note}."
    )
    fixes = [
        "regularise more (raise dropout or weight_decay)",
        "use a smaller model, or more (or augmented) training data",
    ]
    if run.config.get("early_stopping_patience") is None:
        fixes.insert(0, "turn early stopping on (early_stopping_patience=5)")
    elif (kept := _kept_weights(run)) is not None:
        evidence += f" With restore_best_weights the model keeps {kept}."
    return Finding("overfitting", "warning", "overfitting", evidence, _sentence(fixes))


def generalisation_gap(run: RunRecords) -> Finding | None:
    """The model fits its training data almost perfectly and unseen data far worse: it memorised.

    A classification run whose final train_loss is near 0 while val_loss stays far above it (and
    val_accuracy well below 1): overfitting even when val_loss never rose, which the
    :func:`overfitting` rule needs.
    """
    if run.run_info.get("task", "classification") != "classification":
        return None  # a regression loss has no fixed scale to call a gap large
    train, val = run.series("train_loss"), run.series("val_loss")
    if len(train) < 2 or not (math.isfinite(train[-1]) and math.isfinite(val[-1])):
        return None
    gap = val[-1] - train[-1]
    accuracy = run.series("val_accuracy")[-1]
    if train[-1] > GAP_MAX_TRAIN_LOSS or gap < GAP_MIN_NATS or val[-1] < GAP_MIN_RATIO * train[-1]:
        return None
    if math.isfinite(accuracy) and accuracy > GAP_MAX_VAL_ACCURACY:
        return None
    epoch = int(run.epochs[-1]["epoch"])
    evidence = (
        f"at epoch {epoch} train_loss is {number(train[-1])} but val_loss {number(val[-1])}"
        f" ({number(gap)} higher"
        + (f"; val_accuracy {number(accuracy)}" if math.isfinite(accuracy) else "")
        + "): the model fits its training data almost perfectly and unseen data far worse."
    )
    if (kept := _kept_weights(run)) is not None:
        evidence += f" It keeps {kept}."
    fixes = ["get more training data, or augment it (augment=True for images)"]
    dropout = (run.config.get("model_args") or {}).get("dropout")
    decay = run.config.get("weight_decay")
    fixes.append(
        "regularise: "
        + (f"raise dropout (now {number(dropout)}; e.g. --model-arg dropout=0.3)" if dropout is not None else "add dropout")
        + (f" or weight_decay (now {number(decay)}; try 0.05-0.1)" if isinstance(decay, (int, float)) else "")
    )
    parameters, samples = run.run_info.get("parameters"), _training_samples(run)
    size = f" (now {number(parameters)} parameters" if isinstance(parameters, int) else ""
    size += f" for ~{number(samples)} training samples)" if size and samples else (")" if size else "")
    fixes.append(f"use a smaller model{size}")
    if run.config.get("early_stopping_patience") is None:
        fixes.append("turn early stopping on (early_stopping_patience=5) to keep the best epoch")
    return Finding("generalisation_gap", "warning", "overfitting: a large generalisation gap", evidence, _sentence(fixes))


def _kept_weights(run: RunRecords) -> str | None:
    """The earlier epoch restore_best_weights keeps: the best by the run's own monitor, as training chose it."""
    monitor = monitor_of(run)
    kept = monitor.best_index([row.get(monitor.metric) for row in run.epochs])
    if kept is None or kept == len(run.epochs) - 1 or not run.config.get("restore_best_weights", True):
        return None
    return f"epoch {int(run.epochs[kept]['epoch'])}'s weights ({monitor.metric} {number(run.epochs[kept][monitor.metric])})"


def _training_samples(run: RunRecords) -> int | None:
    batch, steps = run.run_info.get("batch_size"), run.run_info.get("steps_per_epoch")
    world = run.run_info.get("world_size", 1)
    return batch * steps * world if isinstance(batch, int) and isinstance(steps, int) else None


def underfitting(run: RunRecords) -> Finding | None:
    """The model fits its training data no better than unseen data, at a loss still close to the start."""
    val, train = run.series("val_loss"), run.series("train_loss")
    if len(train) < MIN_EPOCHS_FOR_TRENDS - 1 or not all(math.isfinite(v) for v in (train[0], train[-1], val[-1])):
        return None
    remaining = train[-1] / train[0] if train[0] > 0 else 0.0
    if train[-1] < val[-1] or remaining < UNDERFIT_MIN_REMAINING:
        return None
    still_falling = math.isfinite(train[-2]) and train[-1] < train[-2] * 0.98
    if still_falling:
        fixes = [
            "train longer (more epochs)",
            "raise the lr or let --lr auto pick it",
            "then, if it stays high, use a larger model",
        ]
        trend = "and was still falling when training ended"
    else:
        fixes = [
            "use a larger model (wider or deeper)",
            "regularise less (lower dropout or weight_decay)",
            "check that the inputs carry the signal (features, normalisation)",
        ]
        trend = "and had stopped falling"
    return Finding(
        "underfitting",
        "warning",
        "underfitting",
        f"the final train_loss ({number(train[-1])}) is no lower than val_loss ({number(val[-1])}), still {remaining:.0%} "
        f"of the first epoch's ({number(train[0])}), {trend}.",
        _sentence(fixes),
    )


def out_of_memory(run: RunRecords) -> Finding | None:
    """The run ran out of (GPU) memory, recovered from doing so, or came within a few percent of it."""
    failure = run.failure
    failed = failure is not None and (
        "OutOfMemory" in str(failure.get("type")) or "out of memory" in str(failure.get("message", "")).lower()
    )
    recoveries = [
        e for e in run.events if "oom" in str(e.get("event", "")).lower() or "out_of_memory" in str(e.get("event", ""))
    ]
    total = run.run_info.get("gpu_memory_total")
    peak = max((r.get("gpu_memory_reserved") or 0 for r in run.epochs), default=0)
    near = bool(total) and peak >= NEAR_OOM_SHARE * total
    if not (failed or recoveries or near):
        return None
    if failed:
        evidence = f"training failed at epoch {failure.get('epoch')}, step {failure.get('step')}: {str(failure.get('message', '')).splitlines()[0][:200]}"
    elif recoveries:
        evidence = f"{len(recoveries)} out-of-memory recovery event(s), the first at step {recoveries[0].get('step')}"
    else:
        evidence = (
            f"peak reserved GPU memory reached {number(peak / 2**30)} GiB of {number(total / 2**30)} GiB ({peak / total:.0%})"
        )
    batch = run.run_info.get("batch_size", run.config.get("batch_size"))
    smaller = f"halve the batch size (now {batch})" if isinstance(batch, int) else "halve the batch size"
    fixes = [
        f"{smaller}, accumulating gradients over 2 steps to keep the effective batch",
        "train in bf16 (precision='bf16') to halve activation memory",
    ]
    fixes.append("or use a smaller model or shorter inputs")
    return Finding(
        "out_of_memory",
        "error" if failed else "warning",
        "out of memory" if failed or recoveries else "close to out of memory",
        evidence + ".",
        _sentence(fixes),
    )


def large_batch_without_lr_scaling(run: RunRecords) -> Finding | None:
    """A large batch trained at an lr that nothing scaled to it."""
    batch = run.run_info.get("batch_size")
    if not isinstance(batch, int) or batch < LARGE_BATCH:
        return None
    reference, rule = run.config.get("reference_batch_size"), run.config.get("lr_scaling", "sqrt")
    if reference is not None and rule != "none":
        return None
    lr = run.run_info.get("peak_lr", run.config.get("lr"))
    why = "lr_scaling='none'" if reference is not None else "no reference_batch_size is set"
    steps = run.run_info.get("steps_per_epoch")
    steps_note = f" ({steps} steps per epoch)" if steps else ""
    return Finding(
        "large_batch_without_lr_scaling",
        "warning",
        "a large batch without lr scaling",
        f"batch size {batch}{steps_note} trained at lr {_g(lr)}, unscaled because {why}.",
        "set reference_batch_size to the batch size the lr was tuned for (lr_scaling='sqrt' for Adam-type "
        "optimizers, 'linear' for SGD) so the lr follows the batch, or find an lr for this batch with --lr auto; "
        f"if {_g(lr)} was tuned for batch {batch}, say so with reference_batch_size={batch}.",
    )


def target_scale(run: RunRecords) -> Finding | None:
    """Regression targets far from unit scale, in a run that explains little of them: scale them before blaming the lr."""
    targets = run.run_info.get("targets")
    if not isinstance(targets, dict) or run.run_info.get("task") != "regression":
        return None
    mean, std = targets.get("mean"), targets.get("std")
    if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in (mean, std)):
        return None
    if max(abs(mean), std) <= TARGET_SCALE_LIMIT:
        return None
    r2 = [value for value in run.series("val_r2") if math.isfinite(value)]
    if r2 and max(r2) >= TARGET_SCALE_MIN_R2:
        return None
    explained = f"; the best val_r2 was {max(r2):.3g}" if r2 else ""
    return Finding(
        "target_scale",
        "warning",
        "regression targets far from unit scale",
        f"the first training batch's targets have mean {mean:.4g} and standard deviation {std:.4g}, while a network's "
        f"outputs start near 0 with unit-order spread{explained}: the model spends its training reaching their scale, "
        "and the loss's size makes clipping act on every step.",
        "Standardise the targets with the training split's mean and standard deviation and invert the predictions "
        "(trainwell.data.load does it for tables and arrays: its loaders carry target_scaling, and val_mae is reported "
        "in your units); only then tune the lr.",
    )


def stopped_before_annealing(run: RunRecords) -> Finding | None:
    """Early stopping ended a run whose lr schedule had not annealed yet (the lr still near its peak)."""
    stops = [event for event in run.events if event.get("event") == "early_stopping"]
    schedule = run.config.get("schedule")
    peak = run.run_info.get("peak_lr")
    if not stops or schedule not in ("onecycle", "cosine") or not isinstance(peak, (int, float)) or peak <= 0:
        return None
    stop = stops[-1]
    lr = stop.get("lr")
    if not isinstance(lr, (int, float)):
        lr = next((row.get("lr") for row in run.epochs if row.get("epoch") == stop.get("epoch")), None)
    if not isinstance(lr, (int, float)) or lr <= ANNEALED_SHARE * peak:
        return None
    planned = run.config.get("epochs")
    of = f" of {planned}" if isinstance(planned, int) else ""
    return Finding(
        "stopped_before_annealing",
        "warning",
        "stopped before the lr annealed",
        f"early stopping ended training at epoch {stop.get('epoch')}{of} with the lr at {lr:.3g}, {lr / peak:.0%} of its "
        f"peak {peak:.3g}: the {schedule} schedule had not annealed, and a model that never trained at a low lr is "
        "usually worse than a shorter run of the same schedule.",
        "Let patience count only once the lr has annealed (trainwell's own early stopping does: "
        "EarlyStopping(start_epoch=...)), raise early_stopping_patience, or plan fewer epochs so that the schedule "
        "anneals within them.",
    )


# A finding that explains another makes it redundant: a plateau is why such a run underfits; a
# generalisation gap says all the rising-val_loss rule would; targets far from unit scale are why
# such a run plateaus or underfits (not the lr).
SUPERSEDES = {
    "loss_plateau": {"underfitting"},
    "generalisation_gap": {"overfitting"},
    "target_scale": {"loss_plateau", "underfitting"},
}

RULES: tuple[Callable[[RunRecords], Finding | None], ...] = (
    nonfinite_loss,
    out_of_memory,
    target_scale,
    stopped_before_annealing,
    loss_plateau,
    underfitting,
    overfitting,
    generalisation_gap,
    large_batch_without_lr_scaling,
)


def diagnose(run: RunRecords | str | Path) -> list[Finding]:
    """Apply every rule to a run; return what they found, errors first.

    Args:
        run: A run directory, or records already read with :func:`~trainwell.observe.records.read_run`.

    Returns:
        The findings; an empty list for a healthy run.

    Raises:
        ConfigError: a run directory does not exist or holds no metrics.jsonl.

    Example:
        >>> from trainwell.observe.records import RunRecords
        >>> losses = [(2.30, 2.29), (2.29, 2.28), (2.28, 2.28), (2.28, 2.27)]
        >>> run = RunRecords.from_records(
        ...     [{"event": "epoch", "epoch": e, "train_loss": t, "val_loss": v} for e, (t, v) in enumerate(losses, 1)])
        >>> [finding.rule for finding in diagnose(run)]
        ['loss_plateau']
    """
    records = run if isinstance(run, RunRecords) else read_run(run)
    findings = [finding for rule in RULES if (finding := rule(records)) is not None]
    redundant = {rule for finding in findings for rule in SUPERSEDES.get(finding.rule, ())}
    findings = [finding for finding in findings if finding.rule not in redundant]
    return sorted(findings, key=lambda finding: finding.severity != "error")


def format_findings(findings: list[Finding]) -> str:
    """The findings as text, one paragraph each, or a line saying none were found."""
    if not findings:
        return "No problems found."
    return "\n".join(str(finding) for finding in findings)


def _is_nonfinite(record: dict, key: str) -> bool:
    # metrics.jsonl writes non-finite numbers as null; a missing key is no evidence.
    return key in record and (
        record[key] is None or (isinstance(record[key], float) and not math.isfinite(record[key]))
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _list(numbers: list[int], limit: int = 5) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _g(value: object) -> str:
    return number(value) if isinstance(value, (int, float)) else str(value)


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
