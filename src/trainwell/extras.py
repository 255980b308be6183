"""Optional dependencies: whether one is installed, and the error that says how to install it.

trainwell's extras (``pip install 'trainwell[tensorboard]'`` and the like) bring packages that
only some features need; a feature checks for its package up front, before any work, with
:func:`require`.
"""

from __future__ import annotations

import importlib.util

from trainwell.exceptions import DependencyError


def require(package: str, what: str, extra: str) -> None:
    """Refuse ``what`` when ``package`` is not installed, naming the command that installs it.

    Args:
        package: The import name of the package, e.g. ``"tensorboard"``.
        what: The feature that needs it, for the message, e.g. ``"loggers=['tensorboard']"``.
        extra: trainwell's extra that brings it, e.g. ``"tensorboard"``.

    Raises:
        DependencyError: the package is missing.

    Example:
        >>> require("json", "reading JSON", "none")
    """
    if importlib.util.find_spec(package) is None:
        raise DependencyError(
            f"{what} needs the {package} package, which is not installed: pip install 'trainwell[{extra}]' "
            f"(or pip install {package})."
        )
