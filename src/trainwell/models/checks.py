"""The argument checks every built-in model makes, with one wording for each kind of mistake."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainwell.exceptions import ConfigError


def check_positive(name: str, value: Any) -> None:
    """Refuse ``value`` unless it is an integer ≥ 1 (``True`` is not a width)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} is invalid: expected an integer ≥ 1.")


def check_dropout(dropout: float) -> None:
    """Refuse a dropout probability outside [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout={dropout} is out of range: expected a number from 0 to below 1.")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not a valid choice: expected one of {', '.join(map(repr, choices))}.")
