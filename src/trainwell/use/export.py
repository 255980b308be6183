"""Export a model: its weights as safetensors, or its computation as a TorchScript or ONNX graph.

safetensors (``pip install 'trainwell[safetensors]'``) holds the weights only, in a tensor-only
format any framework reads without trusting the file. TorchScript and ONNX
(``pip install 'trainwell[onnx]'``) hold the whole computation, to run without the model's Python
code; each export is checked against the original model before it is put in place.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trainwell.exceptions import CheckpointError, CheckpointMismatchError, DependencyError, ExportError, StorageError
from trainwell.files.atomic import fsync_directory, ordinary_mode
from trainwell.files.model_state import describe_mismatch
from trainwell.files.storage import DISK_FULL, classify, first_line, storage_error, writing


def save_safetensors(path: str | Path, model: Any, metadata: Mapping[str, str] | None = None) -> Path:
    """Export ``model``'s weights to a safetensors file, atomically.

    safetensors holds tensors only (no pickle at all), so any framework can read the weights
    without trusting the file. Needs the ``safetensors`` package (``pip install 'trainwell[safetensors]'``).

    Args:
        path: The ``.safetensors`` file to write.
        model: The ``nn.Module`` to export (tied weights are stored once).
        metadata: Strings to store in the file's header.

    Returns:
        The path written.

    Raises:
        CheckpointError: safetensors is not installed.
        StorageError: the file could not be written (read-only directory, full disk, permission).

    Example:
        >>> path = trainwell.use.export.save_safetensors("model.safetensors", model)  # doctest: +SKIP
        >>> trainwell.use.export.load_safetensors(path, model)  # doctest: +SKIP
    """
    safetensors_torch = _safetensors()
    path = Path(path)

    def save(temporary: Path) -> None:
        safetensors_torch.save_model(model, str(temporary), metadata=dict(metadata) if metadata else None)
        ordinary_mode(temporary)  # safetensors creates its file 0600

    return _write_then_replace(path, save, suffix="")


def load_safetensors(path: str | Path, model: Any) -> None:
    """Load weights exported by :func:`save_safetensors` (or any safetensors file) into ``model``.

    Raises:
        CheckpointError: the file is missing or unreadable, or safetensors is not installed.
        CheckpointMismatchError: parameter names or shapes differ from the model's.
    """
    safetensors_torch = _safetensors()
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' does not exist or is not a file: give the path of a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as file:
            shapes = {name: SimpleNamespace(shape=tuple(file.get_slice(name).get_shape())) for name in file.keys()}
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise CheckpointError(f"'{path}' is not a readable safetensors file: {first_line(error)}") from error
    # Tied weights are stored once: a name absent from the file is missing only if no name that
    # shares its storage is present. Everything is checked before the model is touched.
    state = model.state_dict()
    stored = {state[name].data_ptr() for name in shapes if name in state}
    expected = {name: tensor for name, tensor in state.items() if name in shapes or tensor.data_ptr() not in stored}
    problems = describe_mismatch(expected, shapes)
    if problems:
        raise CheckpointMismatchError(
            f"'{path}' does not fit the model {type(model).__name__}: {problems}. It holds the weights of a different architecture."
        )
    safetensors_torch.load_model(model, str(path), strict=False)


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise CheckpointError(
            "safetensors export needs the safetensors package, which is not installed: "
            "pip install 'trainwell[safetensors]' (or pip install safetensors)."
        ) from None
    return safetensors.torch


# ------------------------------------------------------------------------------------------ graphs
#
# A TorchScript or ONNX file holds the model's computation as a graph that runs without its
# Python code. Not every model can become one, and a graph can be wrong without failing (a traced
# branch, a shape baked in), so each export is run on sample inputs of two batch sizes and
# compared with the original model before it is put in place; a file under its final name has
# passed that check.

GRAPH_FORMATS = ("torchscript", "onnx")
# float32 outputs of the same computation in another runtime differ by a few ulps; measured on
# the bundled recipes' models: at most 3e-6 (ONNX Runtime), 0 (TorchScript).
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass
class ExportCheck:
    """How an exported model compared with the original on sample inputs.

    Attributes:
        path: The exported file.
        format: ``"safetensors"``, ``"torchscript"`` or ``"onnx"``.
        max_abs_diff: The largest absolute difference between the two models' outputs.
        samples: How many sample inputs were compared (over two batch sizes).
        method: How the graph was made (``"script"``, ``"trace"``, ``"torch.export"``; ``"weights"`` for safetensors).
    """

    path: Path
    format: str
    max_abs_diff: float
    samples: int
    method: str


def sample_inputs(info: Any, batch_sizes: tuple[int, ...] = (4, 3), seed: int = 0) -> list[Any]:
    """Inputs shaped like a run's prepared data, one tensor per batch size.

    Standard-normal values (prepared inputs are standardised), or token ids with random lengths
    padded with 0 on the right for token data, so padding handling is exercised too.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    shape = tuple(info.input_shape)
    samples = []
    for batch in batch_sizes:
        if info.vocab_size is not None:
            tokens = torch.randint(2, max(3, info.vocab_size), (batch, *shape), generator=generator)
            lengths = torch.randint(1, shape[-1] + 1, (batch,), generator=generator)
            tokens[torch.arange(shape[-1]).expand(batch, -1) >= lengths[:, None]] = 0
            samples.append(tokens)
        else:
            samples.append(torch.randn(batch, *shape, generator=generator))
    return samples


def export_torchscript(
    path: str | Path, model: Any, samples: list[Any], atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> ExportCheck:
    """Export ``model`` as TorchScript (scripted, else traced), checked against the original on ``samples``.

    Scripting keeps control flow; tracing records the operations one sample runs through, which
    is faithful only when no branch depends on the data, so both are checked on every sample
    (two batch sizes) before the file is put in place. (PyTorch deprecates TorchScript in favour
    of ``torch.export``; ONNX is the format to prefer for new deployments.)

    Args:
        path: The file to write (``.pt``); load it with ``torch.jit.load(path)``.
        model: The ``nn.Module`` (put in eval mode).
        samples: Prepared inputs, at least one tensor (:func:`sample_inputs`).
        atol, rtol: Tolerance of the comparison: ``|exported - original| <= atol + rtol * |original|``.

    Returns:
        An :class:`ExportCheck`.

    Raises:
        ExportError: the model cannot be scripted or traced, or the graph's outputs differ.

    Example:
        >>> import torch, tempfile
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> check = export_torchscript(tempfile.mkdtemp() + "/m.pt", model, [torch.randn(4, 3), torch.randn(2, 3)])
        >>> check.method, check.max_abs_diff <= 1e-6
        ('script', True)
    """
    import warnings

    import torch

    model.eval()
    reasons = []
    # TorchScript is deprecated in recent PyTorch, and scripting and tracing warn about code they
    # cannot follow: the comparison with the original model is what tells whether the graph is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("script", "trace"):
            try:
                with torch.no_grad():
                    graph = torch.jit.script(model) if method == "script" else torch.jit.trace(model, (samples[0],))
            except Exception as error:  # scripting and tracing raise many kinds (RuntimeError, NotSupportedError, ...)
                reasons.append(f"{method}: {first_line(error)}")
                continue
            try:
                difference = _compare(graph, model, samples, atol, rtol)
            except ExportError as error:
                reasons.append(f"{method}: {error}")
                continue
            saved = _write_then_replace(Path(path), lambda temporary, graph=graph: torch.jit.save(graph, str(temporary)))
            return ExportCheck(saved, "torchscript", difference, sum(len(s) for s in samples), method)
    raise ExportError(
        f"{type(model).__name__} cannot be exported as TorchScript: {'; '.join(reasons)}. Export it as ONNX "
        "(--format onnx), or its weights as safetensors."
    )


def export_onnx(
    path: str | Path, model: Any, samples: list[Any], atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> ExportCheck:
    """Export ``model`` to ONNX with ``torch.export`` (batch size left dynamic), checked with ONNX Runtime.

    Needs ``pip install 'trainwell[onnx]'`` (onnx, onnxscript, onnxruntime). The graph's input is
    named ``inputs`` and its output ``outputs``.

    Args:
        path: The file to write (``.onnx``; weights inside it).
        model: The ``nn.Module`` (put in eval mode).
        samples: Prepared inputs of at least two batch sizes (:func:`sample_inputs`).
        atol, rtol: Tolerance of the comparison.

    Returns:
        An :class:`ExportCheck`.

    Raises:
        DependencyError: onnx, onnxscript or onnxruntime is missing.
        ExportError: ``torch.export`` cannot capture the model, or ONNX Runtime's outputs differ.
    """
    import torch

    _require_onnx()
    import onnxruntime

    model.eval()

    def write(temporary: Path) -> None:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                model,
                (samples[0],),
                str(temporary),
                dynamo=True,
                input_names=["inputs"],
                output_names=["outputs"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                verbose=False,
            )

    def check(temporary: Path) -> float:
        session = onnxruntime.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(inputs: Any) -> Any:
            return torch.from_numpy(session.run(None, {name: inputs.numpy()})[0])

        return _compare(run, model, samples, atol, rtol)

    try:
        saved, difference = _write_check_replace(Path(path), write, check)
    except StorageError:
        raise
    except ExportError as error:
        raise ExportError(
            f"{type(model).__name__} cannot be exported faithfully to ONNX: {error}. Export it as TorchScript "
            "(--format torchscript), or its weights as safetensors."
        ) from error
    except Exception as error:  # torch.export raises many kinds for code it cannot capture
        raise ExportError(
            f"{type(model).__name__} cannot be exported to ONNX: torch.export could not capture it ({_root_cause(error)}). "
            "Export it as TorchScript (--format torchscript), or its weights as safetensors."
        ) from error
    return ExportCheck(saved, "onnx", difference, sum(len(s) for s in samples), "torch.export")


def check_safetensors(path: str | Path, model: Any, fresh: Any, samples: list[Any]) -> ExportCheck:
    """Load the safetensors file ``path`` into ``fresh`` (a newly built model of the same architecture)
    and compare its outputs with ``model``'s on ``samples``: they must be identical.

    Raises:
        ExportError: the reloaded model's outputs differ.
    """
    load_safetensors(path, fresh)
    fresh.eval()
    model.eval()
    difference = _compare(lambda inputs: fresh(inputs), model, samples, atol=0.0, rtol=0.0)
    return ExportCheck(Path(path), "safetensors", difference, sum(len(s) for s in samples), "weights")


EXPORT_FORMATS = ("safetensors", *GRAPH_FORMATS)
SUFFIXES = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}


def export_run(
    run_dir: str | Path,
    format: str,
    output: str | Path | None = None,
    checkpoint: str | Path = "best",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ExportCheck:
    """Export the model of a run directory (its best checkpoint) as safetensors, TorchScript or ONNX.

    Every export is checked before it is put in place: the safetensors file is loaded into a newly
    built model whose outputs must equal the original's; a TorchScript or ONNX graph is run on
    sample inputs shaped like the run's prepared data (two batch sizes) and compared with the
    original within ``atol + rtol * |output|``. The exported model takes *prepared* inputs: the
    run's ``data.json`` holds the preprocessing (``trainwell.load_model(run_dir).prepare`` applies it).
    For a regression run on standardised targets, a TorchScript or ONNX graph returns values in the
    targets' own units (the scaling is part of the graph); safetensors holds the weights, which
    predict on the standard scale, with the scaling in its metadata (``target_scaling``).

    Args:
        run_dir: A run directory written by ``trainwell train``.
        format: ``"safetensors"``, ``"torchscript"`` or ``"onnx"``.
        output: The file to write; default ``RUN_DIR/model.safetensors``, ``model.torchscript.pt`` or ``model.onnx``.
        checkpoint: ``"best"``, ``"last"`` or a checkpoint file (see :func:`trainwell.load_model`).
        atol, rtol: Tolerance of the graph comparison.

    Returns:
        An :class:`ExportCheck`: the path, the largest difference seen, the method.

    Raises:
        ConfigError: an unknown format.
        DependencyError: the format's packages are missing (the message says what to install).
        ExportError: the model cannot be exported in this format, or the export differs from it.

    Example:
        >>> check = export_run("runs/digits", "onnx")  # doctest: +SKIP
        >>> check.path, check.max_abs_diff  # doctest: +SKIP
        (PosixPath('runs/digits/model.onnx'), 1.2e-06)
    """
    from trainwell.exceptions import ConfigError
    from trainwell.recipes import build_model
    from trainwell.use.inference import load_model

    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format={format!r} is not a valid choice: expected one of {', '.join(map(repr, EXPORT_FORMATS))}.")
    if format == "onnx":
        _require_onnx()
    if format == "safetensors":
        _safetensors()
    import json

    from trainwell.data.targets import Unscaled, target_scaling_of

    loaded = load_model(run_dir, checkpoint=checkpoint, device="cpu")
    path = Path(output) if output is not None else Path(run_dir) / f"model{SUFFIXES[format]}"
    samples = sample_inputs(loaded.info)
    scaling = target_scaling_of(loaded.info) if loaded.info is not None else None
    if format in ("torchscript", "onnx"):
        graph = Unscaled(loaded.model, scaling).eval() if scaling is not None else loaded.model
        export = export_torchscript if format == "torchscript" else export_onnx
        return export(path, graph, samples, atol, rtol)

    from trainwell.version import __version__

    metadata = {
        "trainwell": __version__,
        "model": loaded.config.model,
        "model_args": json.dumps(loaded.config.model_args),
        "checkpoint": loaded.checkpoint.name,
        **({"target_scaling": json.dumps(scaling.to_dict())} if scaling is not None else {}),
    }
    fresh = build_model(loaded.config, loaded.info)
    written, difference = _write_check_replace(
        path,
        lambda temporary: save_safetensors(temporary, loaded.model, metadata),
        lambda temporary: check_safetensors(temporary, loaded.model, fresh, samples).max_abs_diff,
    )
    return ExportCheck(written, "safetensors", difference, sum(len(s) for s in samples), "weights")


def _compare(run: Any, model: Any, samples: list[Any], atol: float, rtol: float) -> float:
    """The largest absolute difference between ``run`` and ``model`` on ``samples``, or ExportError beyond tolerance."""
    import torch

    worst = 0.0
    with torch.no_grad():
        for inputs in samples:
            expected = model(inputs).float()
            found = torch.as_tensor(run(inputs)).float()
            if found.shape != expected.shape:
                raise ExportError(
                    f"the exported model returns shape {tuple(found.shape)} for inputs {tuple(inputs.shape)}, the model "
                    f"{tuple(expected.shape)}"
                )
            difference = (found - expected).abs()
            worst = max(worst, float(difference.max()) if difference.numel() else 0.0)
            if not bool((difference <= atol + rtol * expected.abs()).all()):
                raise ExportError(
                    f"the exported model's outputs differ from the model's by up to {float(difference.max()):.3g} on a "
                    f"sample of {len(inputs)} (tolerance {atol:g} + {rtol:g} x |output|)"
                )
    return worst


def _write_then_replace(path: Path, write: Any, suffix: str | None = None) -> Path:
    saved, _ = _write_check_replace(path, write, lambda temporary: 0.0, suffix)
    return saved


def _write_check_replace(path: Path, write: Any, check: Any, suffix: str | None = None) -> tuple[Path, float]:
    """Write to a temporary file, check it, then rename it into place: nothing unchecked looks complete.

    Raises:
        StorageError: the file could not be written (read-only directory, full disk, permission).
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix if suffix is None else suffix}")
    try:
        with writing(path):
            # A directory that cannot take the file fails here, with the operating system's reason (the
            # serialisers below report it in their own words: SafetensorError, "open file failed").
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.touch()
        try:
            write(temporary)
        except Exception as error:
            if classify(error, path.parent).kind == DISK_FULL:
                raise storage_error(path, error) from error
            raise
        result = check(temporary)
        with writing(path):
            with open(temporary, "rb+") as file:
                os.fsync(file.fileno())
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):  # on a read-only file system even a missing file cannot be unlinked
            temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path, result


def _require_onnx() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise DependencyError(
            f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'trainwell[onnx]' (onnx, onnxscript to export, onnxruntime to check the export)."
        )


def _root_cause(error: BaseException) -> str:
    """The innermost cause's type and first line, without terminal colour codes."""
    import re

    while error.__cause__ is not None:
        error = error.__cause__
    message = re.sub(r"\x1b\[[0-9;]*m", "", first_line(error))
    return f"{type(error).__name__}: {message}"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the ONNX exporter's warnings: one per torchvision operator it cannot register when torchvision is
    absent, notes on its own internals, and graph dumps when torch.export fails (the error names the cause).
    The comparison with the original model tells whether an export worked."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo")]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        # torch.export also prints the partial graph to stderr when it fails.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for each, level in zip(loggers, levels):
            each.setLevel(level)
