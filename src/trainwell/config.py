"""The one validated configuration object behind ``trainwell.fit``, ``Trainer`` and YAML files.

Every best-practice default is a named field here, so it shows up in a run's ``config.yaml`` and
can be overridden. Validation is eager and strict: all problems are reported in one
:class:`~trainwell.exceptions.ConfigError` whose lines name the option, the value received and
what is allowed, before any heavy work starts.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from trainwell.exceptions import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["onecycle", "cosine", "constant"]
Task = Literal["auto", "classification", "regression"]

# Warm-up share of the run that each schedule uses when `warmup_fraction` is left unset.
# 0.3 is the one-cycle policy's standard rise (Smith & Topin; torch's OneCycleLR pct_start);
# cosine annealing and a constant rate start at the peak, as users of those schedules expect.
DEFAULT_WARMUP_FRACTION = {"onecycle": 0.3, "cosine": 0.0, "constant": 0.0}

_DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


class TrainConfig(BaseModel):
    """How to train: every option of :func:`trainwell.fit` with its best-practice default.

    Args:
        epochs: Passes over the training data, an integer from 1 to 1000.
        lr: Peak learning rate, from 1e-6 to 1. The schedule scales it step by step.
        weight_decay: Decoupled (AdamW) weight decay; 0 disables it.
        decay_bias_and_norm: Whether biases and normalisation weights are decayed too. Off by
            default: decaying them only pulls BatchNorm/LayerNorm scales towards zero.
        optimizer: ``"adamw"`` (fused where torch supports it on the device), ``"sgd"``
            (Nesterov momentum), or a callable that takes the parameter groups and returns an
            optimizer.
        momentum: Momentum for ``optimizer="sgd"``.
        schedule: ``"constant"`` (the default), ``"onecycle"`` (warm up to ``lr``, then
            cosine-anneal; recommended with a higher peak ``lr`` than a constant rate would
            tolerate, e.g. 3-10x) or ``"cosine"``; stepped every batch. The default is constant
            because, measured at the same ``lr`` on the bundled datasets, the annealing schedules
            train less per epoch than a constant rate (README, "What is measured").
        warmup_fraction: Share of all steps spent warming up; None picks the schedule's
            standard value (0.3 for one-cycle, 0 for the others).
        max_grad_norm: Clip the global gradient norm to this value; None disables clipping.
        precision: ``"auto"`` (bf16 on CUDA devices that support it, fp16 with a GradScaler on
            older CUDA devices, fp32 on CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        compile: Compile the model with ``torch.compile`` before training; the compilation
            time (the first step's) is logged and recorded as a ``compile`` event, apart from
            the epoch's throughput.
        channels_last: Keep convolutional models and their image batches in channels-last
            memory layout, which tensor cores prefer; None (auto) does so on CUDA for models
            with 2-D convolutions.
        early_stopping_patience: Epochs without a val_loss improvement before stopping; None
            disables early stopping.
        early_stopping_min_delta: How much val_loss must fall to count as an improvement.
        restore_best_weights: Leave the model with the weights of the best epoch by val_loss.
        ema_decay: Keep an exponential moving average of the weights with this decay (e.g.
            0.999; warmed up over the first steps) and make it the model: validation measures
            the average, the best weights and the checkpoints' ``model_state_dict`` hold it, and
            training ends with it. None keeps the weights themselves. ``"auto"`` (the default)
            averages with 0.99 where measurement showed it wins: models with 2-D convolutions at
            a constant lr (README, "What is measured"); elsewhere it keeps the weights.
        seed: Seeds Python, NumPy and torch before training; None leaves the RNGs alone.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        task: ``"classification"``, ``"regression"`` or ``"auto"`` (inferred from the loss, the
            targets and the model's outputs on the first batch).
        loss_fn: Loss callable ``loss_fn(outputs, targets)``; None picks the task's default
            (cross-entropy, binary cross-entropy with logits, or mean squared error).
        run_dir: Directory for config.yaml, metrics.jsonl, train.log and checkpoints/; None
            writes nothing.
        loggers: Loggers writing into ``run_dir`` beside metrics.jsonl: ``"csv"`` (metrics.csv)
            and ``"tensorboard"`` (event files in ``run_dir/tensorboard``; needs
            ``pip install 'trainwell[tensorboard]'``).
        log_every_steps: How often the running loss is read from the device for the progress
            bar (the only per-step host synchronisation the loop does on accelerators).
        progress: Show a progress bar per epoch when output goes to a terminal.
        max_nonfinite_steps: Consecutive steps with a non-finite loss or gradient that are
            skipped before training rolls back to the last good state (or, once ``max_rollbacks``
            are used up, stops with a DivergenceError).
        max_rollbacks: Rollbacks to the last good state allowed in a run, each lowering the
            learning rate; 0 stops with a DivergenceError at the first run of bad steps.
        rollback_lr_factor: Each rollback multiplies the learning rate by this.
        loss_spike_factor: Also skip a step whose loss exceeds this multiple of the running mean
            of recent losses (a spike counts as a bad step); None turns spike detection off.
        split_batch_on_oom: On CUDA out-of-memory, retry the batch as micro-batches with
            gradient accumulation (same effective batch) instead of failing.
        save_checkpoints: With a ``run_dir``, write exact-resume checkpoints to
            ``run_dir/checkpoints`` at the end of every epoch (and on SIGTERM/SIGINT).
        checkpoint_every_steps: Also write one every this many optimizer steps; None only at
            epoch ends.
        checkpoint_keep_last: How many of the newest checkpoints to keep (2 leaves a fallback if
            the newest is damaged later).
        checkpoint_keep_best: How many of the best end-of-epoch checkpoints by val_loss to keep too.
        retry_attempts: Tries in all for a checkpoint write that fails with a transient I/O error.
        retry_base_delay_s: Wait before the second try, in seconds; each later wait is
            ``retry_factor`` times the previous one, stretched by up to ``retry_jitter`` of itself.
        retry_factor: Growth of the wait between tries.
        retry_jitter: Random share added to each wait, so that many processes do not retry in step.
        reference_batch_size: The batch size ``lr`` was tuned for. When the training batch size
            differs, ``lr`` is rescaled by ``lr_scaling``; None disables the rescaling.
        lr_scaling: ``"sqrt"`` (suits Adam-type optimizers), ``"linear"`` (suits SGD) or ``"none"``.
            Under torchrun the rule applies to the global batch (batch size per process x processes).
        distributed_backend: The process group's backend under torchrun: ``"auto"`` (NCCL on CUDA,
            gloo on CPUs), ``"nccl"`` or ``"gloo"``. Unused in one process.

    Raises:
        ConfigError: listing every invalid or unknown option.

    Example:
        >>> TrainConfig(epochs=5, lr=1e-2, schedule="onecycle").warmup_fraction
        0.3
    """

    # defer_build: the validation schema is built on first use, not at import time.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True, defer_build=True)

    epochs: StrictInt = Field(10, ge=1, le=1000)
    lr: float = Field(1e-3, ge=1e-6, le=1.0, allow_inf_nan=False)
    weight_decay: float = Field(0.01, ge=0.0, allow_inf_nan=False)
    decay_bias_and_norm: StrictBool = False
    optimizer: Union[Literal["adamw", "sgd"], Callable[..., Any]] = "adamw"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    schedule: Schedule = "constant"
    warmup_fraction: Optional[float] = Field(None, ge=0.0, lt=1.0)
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, allow_inf_nan=False)
    precision: Precision = "auto"
    compile: StrictBool = False
    channels_last: Optional[StrictBool] = None
    early_stopping_patience: Optional[StrictInt] = Field(5, ge=1)
    early_stopping_min_delta: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    restore_best_weights: StrictBool = True
    ema_decay: Union[Literal["auto"], Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)], None] = "auto"
    seed: Optional[StrictInt] = Field(None, ge=0)
    device: str = Field("auto", pattern=_DEVICE_PATTERN)
    task: Task = "auto"
    loss_fn: Optional[Callable[..., Any]] = None
    run_dir: Optional[Path] = None
    loggers: list[Literal["csv", "tensorboard"]] = Field(default_factory=list)
    log_every_steps: StrictInt = Field(50, ge=1)
    progress: StrictBool = True
    max_nonfinite_steps: StrictInt = Field(5, ge=1)
    max_rollbacks: StrictInt = Field(3, ge=0)
    rollback_lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    loss_spike_factor: Optional[float] = Field(None, gt=1.0, allow_inf_nan=False)
    split_batch_on_oom: StrictBool = True
    save_checkpoints: StrictBool = True
    checkpoint_every_steps: Optional[StrictInt] = Field(None, ge=1)
    checkpoint_keep_last: StrictInt = Field(2, ge=1)
    checkpoint_keep_best: StrictInt = Field(1, ge=0)
    retry_attempts: StrictInt = Field(3, ge=1, le=100)
    retry_base_delay_s: float = Field(1.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    retry_factor: float = Field(2.0, ge=1.0, le=100.0, allow_inf_nan=False)
    retry_jitter: float = Field(0.1, ge=0.0, le=10.0, allow_inf_nan=False)
    reference_batch_size: Optional[StrictInt] = Field(None, ge=1)
    lr_scaling: Literal["sqrt", "linear", "none"] = "sqrt"
    distributed_backend: Literal["auto", "nccl", "gloo"] = "auto"

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as error:
            raise config_error(error, type(self)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as error:
            raise config_error(error, type(self)) from None

    @field_validator("loggers")
    @classmethod
    def _loggers_installed(cls, loggers: list[str]) -> list[str]:
        if "tensorboard" in loggers:
            from trainwell.extras import require

            require("tensorboard", "loggers=['tensorboard']", "tensorboard")
        return list(dict.fromkeys(loggers))

    @model_validator(mode="after")
    def _resolve_schedule_defaults(self) -> TrainConfig:
        if self.warmup_fraction is None:
            # object.__setattr__ skips validate_assignment, which would recurse into this validator.
            object.__setattr__(self, "warmup_fraction", DEFAULT_WARMUP_FRACTION[self.schedule])
        return self

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some options changed.

        Only options that were set explicitly carry over; defaults that depend on other options
        (``warmup_fraction`` on ``schedule``) are resolved again.
        """
        kept = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self)(**{**kept, **changes})

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data for ``config.yaml``: paths as strings, callables by name."""
        plain = {}
        for name, value in self.model_dump().items():
            if isinstance(value, Path):
                value = str(value)
            elif callable(value):
                value = describe_callable(value)
            plain[name] = value
        return plain


def describe_callable(value: Any) -> str:
    """A readable name for a user-supplied callable (a loss module, an optimizer factory)."""
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"<{module}.{name}>" if module else f"<{name}>"


def config_error(
    problems: ValidationError | list[dict[str, Any]],
    config_type: type[BaseModel],
    option_names: Mapping[str, str] | None = None,
) -> ConfigError:
    """Turn pydantic's report into one ConfigError that names each option, its value and the fix.

    Args:
        problems: What pydantic found (the error, or its ``errors()``).
        config_type: The model that was validated (to describe what each field allows).
        option_names: How to spell each field for the reader, e.g. ``{"epochs": "--epochs"}`` for
            a command line; fields absent from the mapping keep their own name.

    Returns:
        A ConfigError whose ``problems`` attribute keeps pydantic's structured report, so that a
        caller can render it again with other option names.
    """
    if isinstance(problems, ValidationError):
        problems = problems.errors()
    names = dict(option_names or {})
    lines = []
    seen = set()
    for problem in problems:
        # A field with a Union type reports once per member; the first report speaks for the field.
        field = str(problem["loc"][0]) if problem["loc"] else "config"
        if field in seen:
            continue
        seen.add(field)
        shown = names.get(field, field)
        value = problem.get("input")
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_option_message(shown, sorted(config_type.model_fields), names))
            continue
        info = config_type.model_fields.get(field)
        allowed = describe_allowed(info.annotation, info.metadata) if info else problem["msg"]
        line = f"{shown}={_show(value)} {_what_is_wrong(problem['type'])}: expected {allowed}."
        if info is not None and isinstance(value, str):
            choices = [str(choice) for choice in _literal_choices(info.annotation)]
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            if close:
                line += f" Did you mean {close[0]!r}?"
        lines.append(line)
    error = ConfigError("\n".join(lines))
    error.problems = problems
    return error


def _literal_choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return [choice for arg in typing.get_args(annotation) for choice in _literal_choices(arg)]


def _unknown_option_message(shown: str, known: list[str], names: Mapping[str, str]) -> str:
    spelled = [names.get(field, field) for field in known]
    close = difflib.get_close_matches(shown, spelled, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else f" Known options: {', '.join(spelled)}."
    return f"{shown!r} is not a known option.{hint}"


def _what_is_wrong(problem_type: str) -> str:
    if problem_type in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        return "is out of range"
    if problem_type == "finite_number":
        return "is not a finite number"
    if problem_type in {"literal_error", "string_pattern_mismatch", "callable_type"}:
        return "is not a valid choice"
    return "has the wrong type"


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)


def describe_allowed(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """Say in words what a field accepts, from its type and its constraints."""
    bounds = {}
    for item in metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, key.capitalize())):
                bounds[key] = getattr(item, key)
        if getattr(item, "pattern", None) == _DEVICE_PATTERN:
            return "'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'"
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # a member of a Union with its own constraints, e.g. a float in (0, 1)
        inner, *extra = typing.get_args(annotation)
        constraints = [item for entry in extra for item in getattr(entry, "metadata", [entry])]
        return describe_allowed(inner, [*metadata, *constraints])
    if origin in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        described = " or ".join(describe_allowed(arg, metadata) for arg in members)
        return described + (" or None" if type(None) in typing.get_args(annotation) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin is list:
        return "a list, each item " + describe_allowed(typing.get_args(annotation)[0])
    if annotation is bool or annotation == StrictBool:
        return "true or false"
    if annotation in (int, StrictInt):
        return _with_bounds("an integer", bounds)
    if annotation is float:
        return _with_bounds("a number", bounds)
    if annotation is Path:
        return "a directory path"
    if origin is not None and "Callable" in str(origin):
        return "a callable"
    return getattr(annotation, "__name__", str(annotation))


def _with_bounds(noun: str, bounds: dict[str, Any]) -> str:
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {_number(low)} to {_number(high)}"
    parts = []
    if low is not None:
        parts.append(f"{'≥' if 'ge' in bounds else '>'} {_number(low)}")
    if high is not None:
        parts.append(f"{'≤' if 'le' in bounds else '<'} {_number(high)}")
    return f"{noun} {' and '.join(parts)}" if parts else noun


def _number(value: float) -> str:
    return f"{value:g}"
