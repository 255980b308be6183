"""Reading the files a user hands trainwell (config files, data.json, tables, texts): one-line errors, never a traceback.

Whatever is wrong with a file (missing, a directory, unreadable, not UTF-8, not valid YAML or
JSON), the error names the file, says what is wrong with it and what to do, as an error of the
kind the caller chooses (``ConfigError`` for a config file, ``DataError`` for data).

YAML is read as YAML 1.2 reads numbers: ``lr: 1e-3`` is the number 0.001 (PyYAML alone follows
YAML 1.1, where it is the string ``"1e-3"``, which a strict option then refuses).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainwell.exceptions import TrainwellError


@contextlib.contextmanager
def reading(path: Path, error: type[TrainwellError], what: str = "file") -> Iterator[None]:
    """Turn a failure to read or decode ``path`` inside the block into ``error``, naming the file and the fix.

    Args:
        path: The file being read.
        error: The TrainwellError subclass to raise (``ConfigError``, ``DataError``).
        what: What the file is, for the message (``"config file"``, ``"table"``).
    """
    try:
        yield
    except TrainwellError:
        raise
    except UnicodeDecodeError as problem:
        raise error(
            f"{what} '{path}' is not UTF-8 text (it holds the byte 0x{problem.object[problem.start]:02x}, which UTF-8 "
            "cannot decode): save it as UTF-8, e.g. iconv -f latin1 -t utf-8 FILE > NEW_FILE."
        ) from None
    except FileNotFoundError:
        raise error(f"{what} '{path}' does not exist: check the path.") from None
    except IsADirectoryError:
        raise error(f"{what} '{path}' is a directory: give the path of a file.") from None
    except PermissionError:
        raise error(f"{what} '{path}' cannot be read (permission denied): make it readable for this user.") from None
    except OSError as problem:
        raise error(f"{what} '{path}' cannot be read ({problem.strerror or problem}): check the file system.") from None


def read_text(path: Path, error: type[TrainwellError], what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped), or ``error`` saying why not."""
    with reading(path, error, what):
        return Path(path).read_text(encoding="utf-8-sig")


def read_yaml(path: Path, error: type[TrainwellError], what: str = "config file") -> Any:
    """The YAML document in ``path`` (numbers read as YAML 1.2 reads them), or ``error`` saying why not.

    Example:
        >>> import tempfile
        >>> from trainwell.exceptions import ConfigError
        >>> path = Path(tempfile.mkdtemp()) / "run.yaml"
        >>> _ = path.write_text("lr: 1e-3\\nepochs: 5\\n")
        >>> read_yaml(path, ConfigError)
        {'lr': 0.001, 'epochs': 5}
    """
    import yaml

    text = read_text(path, error, what)
    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = getattr(problem, "problem", None) or str(problem).splitlines()[0]
        raise error(f"{what} '{path}' is not valid YAML ({reason}{where}): fix that line.") from None


def read_json(path: Path, error: type[TrainwellError], what: str = "file") -> Any:
    """The JSON document in ``path``, or ``error`` saying why not."""
    text = read_text(path, error, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(
            f"{what} '{path}' is not valid JSON ({problem.msg} at line {problem.lineno}, column {problem.colno}): "
            "it is damaged; write it again."
        ) from None


_YAML_12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_LOADER: Any = None


def _loader() -> Any:
    """A safe YAML loader that also reads ``1e-3`` (no dot) as a number, as YAML 1.2 does."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_12_FLOAT, list("-+0123456789."))
        _LOADER = Loader
    return _LOADER
