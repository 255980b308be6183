"""Run directories: where a run's config, metrics and log live.

    <run_dir>/config.yaml     the resolved config (re-runnable as is)
    <run_dir>/metrics.jsonl   one JSON object per epoch, and events (skipped steps, ...)
    <run_dir>/train.log       the log at info level
    <run_dir>/model.txt       the model's structure and parameter count
    <run_dir>/data.json       what was learned from the data (trainwell.data.save_data_info)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError

# Files whose presence means a directory already holds a run.
RUN_FILES = ("metrics.jsonl", "config.yaml")


def prepare_run_dir(run_dir: Path, config: dict[str, Any], resuming: bool = False) -> Path:
    """Create ``run_dir`` and write its ``config.yaml``, refusing to mix two runs in one directory.

    Args:
        run_dir: The run directory.
        config: The resolved config, written to ``config.yaml``.
        resuming: The run continues the one ``run_dir`` holds (the one exception to the refusal).

    Raises:
        ConfigError: ``run_dir`` is a file, or already holds another run's files.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir='{run_dir}' is a file: expected a directory (new or empty).")
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not resuming:
        raise ConfigError(
            f"run_dir='{run_dir}' already holds a run ({', '.join(existing)}): choose a new directory "
            "(e.g. --out runs/<new-name>) or remove the old one, so that no run's record is overwritten. "
            "To continue that run from its last checkpoint, pass resume='auto' (--resume auto)."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", config)
    return run_dir


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML, atomically."""
    import yaml

    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file renamed into place, so a crash never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file renamed into place (an image, a report)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
