"""Run directories: where a run's config, metrics and log live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError

# Files whose presence means a directory already holds a run.
RUN_FILES = ("metrics.jsonl", "config.yaml")


def prepare_run_dir(run_dir: Path, config: dict[str, Any]) -> Path:
    """Create ``run_dir`` and write its ``config.yaml``, refusing to mix two runs in one directory.

    Raises:
        ConfigError: ``run_dir`` is a file, or already holds another run's files.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir='{run_dir}' is a file: expected a directory (new or empty).")
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing:
        raise ConfigError(
            f"run_dir='{run_dir}' already holds a run ({', '.join(existing)}): choose a new directory "
            "(e.g. --out runs/<new-name>) or remove the old one, so that no run's record is overwritten."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", config)
    return run_dir


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML through a temporary file, so a crash never leaves half a file."""
    import yaml

    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    temporary.replace(path)
