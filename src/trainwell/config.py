"""The one validated configuration object behind ``trainwell.fit``, ``Trainer`` and YAML files.

Every best-practice default is a named field here, so it shows up in a run's ``config.yaml`` and
can be overridden. Validation is eager and strict: all problems are reported in one
:class:`~trainwell.exceptions.ConfigError` whose lines name the option, the value received and
what is allowed, before any heavy work starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from trainwell.exceptions import ConfigError
from trainwell.option_errors import DEVICE_PATTERN, METRIC_NAME_PATTERN, config_error

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["onecycle", "cosine", "constant"]
Task = Literal["auto", "classification", "regression"]

# Warm-up share of the run that each schedule uses when `warmup_fraction` is left unset.
# 0.3 is the one-cycle policy's standard rise (Smith & Topin; torch's OneCycleLR pct_start);
# cosine annealing and a constant rate start at the peak, as users of those schedules expect.
DEFAULT_WARMUP_FRACTION = {"onecycle": 0.3, "cosine": 0.0, "constant": 0.0}


# The validation metrics `metrics=` may name, by task ("topK", any K from 2, is classification's
# too). Each is reported as ``val_<name>``; which of them a task computes by default, and which
# fit a given model, is decided from the first batch (trainwell.loop.metric_choice).
CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall", "confusion_matrix", "perplexity")
REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")
TOP_K_PATTERN = r"top([0-9]+)"
# A number of batches (an integer ≥ 1) or a share of the loader's batches (a number in (0, 1]).
BatchLimit = Union[
    Annotated[int, Strict(), annotated_types.Ge(1)],
    Annotated[float, Strict(), annotated_types.Gt(0.0), annotated_types.Le(1.0)],
]
# With max_steps and no epochs of its own, a run goes on until max_steps: up to the most epochs allowed.
EPOCHS_DEFAULT, EPOCHS_MAX = 10, 1000


class TrainConfig(BaseModel):
    """How to train: every option of :func:`trainwell.fit` with its best-practice default.

    Args:
        epochs: Passes over the training data, an integer from 1 to 1000.
        lr: Peak learning rate, from 1e-6 to 1 (a number: not a string, not a bool, like every
            float option). The schedule scales it step by step.
        weight_decay: Decoupled (AdamW) weight decay; 0 disables it.
        decay_bias_and_norm: Whether biases and normalisation weights are decayed too. Off by
            default: decaying them only pulls BatchNorm/LayerNorm scales towards zero.
        optimizer: ``"adamw"`` (fused where torch supports it on the device), ``"sgd"``
            (Nesterov momentum), or a factory: a callable that takes the model's trainable
            parameters (a list) and returns a torch optimizer, e.g.
            ``lambda params: torch.optim.SGD(params, lr=0.1)``. The factory's own settings are
            used as they are (``lr``, ``weight_decay``, ``momentum`` and the lr scaling apply to
            the built-in optimizers only); optimizers whose ``step`` needs a closure
            (``torch.optim.LBFGS``) get one that recomputes the step.
        momentum: Momentum for ``optimizer="sgd"``.
        schedule: ``"constant"`` (the default), ``"onecycle"`` (warm up to ``lr``, then
            cosine-anneal; recommended with a higher peak ``lr`` than a constant rate would
            tolerate, e.g. 3-10x) or ``"cosine"``; stepped every batch. The default is constant
            because, measured at the same ``lr`` on the bundled datasets, the annealing schedules
            train less per epoch than a constant rate (README, "What is measured"). Or a factory
            ``optimizer -> torch LR scheduler`` (``lambda opt: torch.optim.lr_scheduler.StepLR(opt,
            10)``, ReduceLROnPlateau, LambdaLR ...), stepped as ``schedule_interval`` says.
        warmup_fraction: Share of all steps spent warming up; None picks the schedule's
            standard value (0.3 for one-cycle, 0 for the others; a scheduler of your own warms up
            itself).
        max_grad_norm: Clip the global gradient norm to this value; None disables clipping.
        precision: ``"auto"`` (bf16 on CUDA devices that support it, fp16 with a GradScaler on
            older CUDA devices, fp32 on CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        compile: Compile the model with ``torch.compile`` before training; the compilation
            time (the first step's) is logged and recorded as a ``compile`` event, apart from
            the epoch's throughput.
        channels_last: Keep convolutional models and their image batches in channels-last
            memory layout, which tensor cores prefer; None (auto) does so on CUDA for models
            with 2-D convolutions.
        early_stopping_patience: Epochs without an improvement of the monitored metric (val_loss
            by default, see ``monitor``) before stopping, counted under one-cycle or cosine only
            from the first epoch that ends with the lr at most half its peak; None disables early
            stopping.
        early_stopping_min_delta: How much the monitored metric must improve to count.
        restore_best_weights: Leave the model with the weights of the best epoch by the monitor.
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
            writes nothing. One process at a time writes it (it holds the directory's lock).
        run_dir_wait_s: When another process holds ``run_dir`` (the same job started twice, or
            two resumes of one run), how many seconds to wait for it to end before refusing; 0
            refuses at once, naming that process's pid and host; None waits until it ends.
        loggers: Loggers beside metrics.jsonl: ``"csv"`` (metrics.csv), ``"tensorboard"`` (event
            files in ``run_dir/tensorboard``; needs ``pip install 'trainwell[tensorboard]'``) and
            ``"mlflow"`` (an MLflow run in ``mlflow_tracking_uri``, else a local store in
            ``run_dir/mlruns``; needs ``pip install 'trainwell[mlflow]'``).
        mlflow_tracking_uri: Where ``loggers=["mlflow"]`` logs: an MLflow server's address or a
            store URI (``sqlite:///mlflow.db``); None uses ``$MLFLOW_TRACKING_URI`` when set, else
            a local store in the run directory.
        log_every_steps: How often (in optimizer steps) a step record with the running loss is
            logged, and non-finite steps judged on the device are read back.
        progress: Show a progress bar per epoch when output goes to a terminal (redrawn every
            0.5 s with the running loss and lr, read from the device only then).
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
        checkpoint_keep_best: How many of the best end-of-epoch checkpoints by the monitor (val_loss
            by default) to keep too.
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
        metrics: The validation metrics to compute, each reported as ``val_<name>`` beside
            ``val_loss`` (which is always computed). Classification: ``"accuracy"``, ``"f1"``,
            ``"precision"``, ``"recall"`` (macro averages over the classes; of the positive class
            for one logit per target), ``"topK"`` (e.g. ``"top5"``: the share of labels among
            the K highest logits), ``"perplexity"`` (exp of the mean cross-entropy per label) and
            ``"confusion_matrix"`` (no ``val_`` column: ``confusion.json``, the report, and
            ``trainwell.evaluate``; at most 100 classes). Regression: ``"mae"``, ``"mse"``,
            ``"rmse"``, ``"r2"``. None (the default) computes the task's default set: accuracy,
            f1, precision, recall and the confusion matrix up to 100 classes, accuracy alone
            above; mae, rmse and r2 for regression. ``[]`` computes the loss alone.
        strategy: How the processes under torchrun share the model: ``"ddp"`` (each holds the whole
            model, gradients averaged every step: DistributedDataParallel) or ``"fsdp"`` (weights,
            gradients and optimizer state sharded over the processes: torch's FSDP2
            ``fully_shard``; checkpoints are sharded too, one file per process). Unused in one process.
        accumulate_grad_batches: Sum the gradients of this many consecutive batches before each
            optimizer step (each batch's loss divided by the batches in the step), so that a step
            equals one on their concatenation for a mean loss; under DDP the gradients are averaged
            across processes once per step. Steps, schedules and ``max_steps`` count optimizer steps.
        max_steps: Stop after this many optimizer steps (inside an epoch: that epoch is then
            validated and recorded); None stops after ``epochs`` only. Without ``epochs`` of its
            own, ``epochs`` becomes 1000, so that ``max_steps`` decides; the built-in schedules
            span the run's planned steps (the fewer of the two).
        val_every_steps: Also validate every this many optimizer steps inside an epoch (logged as
            ``validation`` records; callbacks get ``on_eval_begin``/``on_eval_end``); the best
            epoch, early stopping and the best checkpoint are decided on the epochs' ends.
        limit_train_batches: Train on at most this many batches per epoch (an integer), or this
            share of them (a number in (0, 1], at least one batch); None uses every batch.
        limit_val_batches: The same for each validation pass.
        fast_dev_run: Run one training batch and one validation batch, then stop: a check that
            the whole loop runs. No file is written (``run_dir``, loggers and checkpoints are
            ignored; ``resume`` is refused).
        overfit_batches: Train every epoch on the same first this-many training batches (taken
            once, in the loader's first order): a model that cannot overfit them has a bug.
        monitor: The metric that decides the best epoch: early stopping, the restored weights,
            ``FitResult.best``, the best checkpoint (``checkpoints/best.pt``, ``load_model(...,
            "best")``), the rollback target and ReduceLROnPlateau; None is ``val_loss``
            (``train_loss`` without validation). Any key of an epoch's row, e.g. ``"val_accuracy"``.
        mode: Whether the ``monitor`` is better ``"min"`` or ``"max"``; ``"auto"`` is ``"max"`` for
            accuracy, f1, precision, recall, r2, auc and top-k metrics and ``"min"`` otherwise.
        schedule_interval: When a scheduler of your own (``schedule=`` a factory) steps:
            ``"step"`` (after every optimizer step) or ``"epoch"`` (after every epoch); with a
            built-in schedule, ``"epoch"`` holds the rate for an epoch at its first step's value.
            ReduceLROnPlateau steps after every epoch on ``monitor``.

    Raises:
        ConfigError: listing every invalid or unknown option.

    Example:
        >>> TrainConfig(epochs=5, lr=1e-2, schedule="onecycle").warmup_fraction
        0.3
    """

    # defer_build: the validation schema is built on first use, not at import time.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True, defer_build=True)

    epochs: StrictInt = Field(EPOCHS_DEFAULT, ge=1, le=EPOCHS_MAX)
    lr: StrictFloat = Field(1e-3, ge=1e-6, le=1.0, allow_inf_nan=False)
    weight_decay: StrictFloat = Field(0.01, ge=0.0, allow_inf_nan=False)
    decay_bias_and_norm: StrictBool = False
    optimizer: Union[Literal["adamw", "sgd"], Callable[..., Any]] = "adamw"
    momentum: StrictFloat = Field(0.9, ge=0.0, lt=1.0)
    schedule: Union[Schedule, Callable[..., Any]] = "constant"
    warmup_fraction: Optional[StrictFloat] = Field(None, ge=0.0, lt=1.0)
    max_grad_norm: Optional[StrictFloat] = Field(1.0, gt=0.0, allow_inf_nan=False)
    precision: Precision = "auto"
    compile: StrictBool = False
    channels_last: Optional[StrictBool] = None
    early_stopping_patience: Optional[StrictInt] = Field(5, ge=1)
    early_stopping_min_delta: StrictFloat = Field(0.0, ge=0.0, allow_inf_nan=False)
    restore_best_weights: StrictBool = True
    ema_decay: Union[Literal["auto"], Annotated[float, Strict(), Field(gt=0.0, lt=1.0, allow_inf_nan=False)], None] = "auto"
    seed: Optional[StrictInt] = Field(None, ge=0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    task: Task = "auto"
    loss_fn: Optional[Callable[..., Any]] = None
    run_dir: Optional[Path] = None
    run_dir_wait_s: Optional[StrictFloat] = Field(0.0, ge=0.0, allow_inf_nan=False)
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(default_factory=list)
    mlflow_tracking_uri: Optional[str] = None
    log_every_steps: StrictInt = Field(50, ge=1)
    progress: StrictBool = True
    max_nonfinite_steps: StrictInt = Field(5, ge=1)
    max_rollbacks: StrictInt = Field(3, ge=0)
    rollback_lr_factor: StrictFloat = Field(0.5, gt=0.0, lt=1.0)
    loss_spike_factor: Optional[StrictFloat] = Field(None, gt=1.0, allow_inf_nan=False)
    split_batch_on_oom: StrictBool = True
    save_checkpoints: StrictBool = True
    checkpoint_every_steps: Optional[StrictInt] = Field(None, ge=1)
    checkpoint_keep_last: StrictInt = Field(2, ge=1)
    checkpoint_keep_best: StrictInt = Field(1, ge=0)
    retry_attempts: StrictInt = Field(3, ge=1, le=100)
    retry_base_delay_s: StrictFloat = Field(1.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    retry_factor: StrictFloat = Field(2.0, ge=1.0, le=100.0, allow_inf_nan=False)
    retry_jitter: StrictFloat = Field(0.1, ge=0.0, le=10.0, allow_inf_nan=False)
    reference_batch_size: Optional[StrictInt] = Field(None, ge=1)
    lr_scaling: Literal["sqrt", "linear", "none"] = "sqrt"
    distributed_backend: Literal["auto", "nccl", "gloo"] = "auto"
    metrics: Optional[list[StrictStr]] = None
    strategy: Literal["ddp", "fsdp"] = "ddp"
    accumulate_grad_batches: StrictInt = Field(1, ge=1, le=100_000)
    max_steps: Optional[StrictInt] = Field(None, ge=1)
    val_every_steps: Optional[StrictInt] = Field(None, ge=1)
    limit_train_batches: Optional[BatchLimit] = None
    limit_val_batches: Optional[BatchLimit] = None
    fast_dev_run: StrictBool = False
    overfit_batches: Optional[StrictInt] = Field(None, ge=1)
    monitor: Optional[str] = Field(None, pattern=METRIC_NAME_PATTERN)
    mode: Literal["auto", "min", "max"] = "auto"
    schedule_interval: Literal["step", "epoch"] = "step"

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
        from trainwell.extras import require

        for name, package in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
            if name in loggers:
                require(package, f"loggers=[{name!r}]", name)
        return list(dict.fromkeys(loggers))

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str] | None) -> list[str] | None:
        if metrics is None:
            return None
        for name in metrics:
            problem = metric_name_problem(name)
            if problem is not None:
                raise PydanticCustomError("trainwell_choice", problem)
        return list(dict.fromkeys(metrics))

    @model_validator(mode="after")
    def _resolve_schedule_defaults(self) -> TrainConfig:
        # object.__setattr__ skips validate_assignment, which would recurse into this validator.
        if self.warmup_fraction is None:
            warmup = DEFAULT_WARMUP_FRACTION.get(self.schedule, 0.0) if isinstance(self.schedule, str) else 0.0
            object.__setattr__(self, "warmup_fraction", warmup)
        if "epochs" not in self.model_fields_set:
            object.__setattr__(self, "epochs", EPOCHS_MAX if self.max_steps is not None else EPOCHS_DEFAULT)
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


def metric_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an item of ``metrics=`` (None: it is a known metric).

    Example:
        >>> metric_name_problem("acuracy")
        "'acuracy' is not a known metric. Did you mean 'accuracy'?"
    """
    import re

    known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    if name in known:
        return None
    top_k = re.fullmatch(TOP_K_PATTERN, name)
    if top_k is not None:
        if int(top_k.group(1)) >= 2:
            return None
        return f"{name!r} is the share of labels that are the top prediction: write 'accuracy'."
    if name in ("loss", "val_loss"):
        return f"{name!r} need not be asked for: val_loss is always computed. List only the other metrics."
    plain = name.lower().removeprefix("val_").replace("-", "_")
    if plain in known or re.fullmatch(TOP_K_PATTERN, plain):
        hint = f" Did you mean {plain!r}?"
    else:
        close = difflib.get_close_matches(plain, [*known, "top5"], n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else f" Known metrics: {', '.join(known)}, topK (e.g. 'top5')."
    return f"{name!r} is not a known metric.{hint}"


def check_metric_names(metrics: Any) -> list[str] | None:
    """``metrics`` checked as ``TrainConfig(metrics=...)`` checks it (for APIs that take it alone), without duplicates.

    Raises:
        ConfigError: not a list of strings, or an unknown name.

    Example:
        >>> check_metric_names(("accuracy", "top5", "accuracy"))
        ['accuracy', 'top5']
    """
    if metrics is None:
        return None
    if isinstance(metrics, (str, bytes)) or not isinstance(metrics, Iterable):
        raise ConfigError(
            f"metrics={metrics!r} has the wrong type: expected a list of metric names, e.g. ['accuracy', 'top5']."
        )
    metrics = list(metrics)
    for name in metrics:
        if not isinstance(name, str):
            raise ConfigError(
                f"metrics={metrics!r} holds {name!r}: expected metric names (strings), e.g. ['accuracy', 'top5']."
            )
        problem = metric_name_problem(name)
        if problem is not None:
            raise ConfigError(f"metrics={metrics!r}: {problem}")
    return list(dict.fromkeys(metrics))


def describe_callable(value: Any) -> str:
    """A readable name for a user-supplied callable (a loss module, an optimizer factory)."""
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"<{module}.{name}>" if module else f"<{name}>"
