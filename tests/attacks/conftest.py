"""What the attack tests share: a finished run to damage, the command line in this process, and real mounts.

The attacks run what a user or a hostile file would run: the ``trainwell`` command (in this
process, so that a traceback shows as an exception the test sees) and the public API. File
systems that fail for real (a 2 MB tmpfs, a read-only bind mount) need root; where mounting is
not allowed the test is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainwell.cli import main


@pytest.fixture
def finished_run(trained_run, tmp_path):
    """A copy (to damage at will) of a finished 2-epoch digits run of ``trainwell train``'s recipe."""
    source = trained_run("digits", data="digits", epochs=2).run_dir
    return Path(shutil.copytree(source, tmp_path / "run"))


@pytest.fixture
def trainwell_command(capsys):
    """``trainwell_command(*args) -> (exit status, stderr)``: the command line run in this process.

    A traceback would surface here as the exception itself; the status and the error line are what a user sees.
    """

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        status = main([str(arg) for arg in args])
        return status, capsys.readouterr().err

    return run


def digits_inputs(path: Path) -> Path:
    """A CSV of four digits images in the columns a digits run predicts from; returns ``path``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [",".join(digits.feature_names)] + [",".join(f"{value:g}" for value in row) for row in digits.data[:4]]
    path.write_text("\n".join(rows) + "\n")
    return path


def last_line(stderr: str) -> str:
    """The error line a failed command ends with (what a user reads)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting is not allowed here ({done.stderr.strip() or 'mount failed'}): the test needs root")


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. ``"2m"``) mounted at ``directory`` for the block."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    directory.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextlib.contextmanager
def read_only(source: Path, directory: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only at ``directory`` for the block (read-only even for root)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    directory.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(directory))
    try:
        _mount("-o", "remount,bind,ro", str(directory))
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
