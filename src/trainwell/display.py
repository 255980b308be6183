"""What a person sees in the terminal: one style for numbers, and progress bars for long work.

Every number trainwell shows (the epoch line, the final table, the report, the doctor, the
model summary) goes through :func:`number`, so that ``1,148`` never sits next to ``34.1937``.
Every long command shows a :func:`progress` bar when its output is a terminal, and nothing when
it is piped to a file.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any

# A bar is redrawn at most this often: often enough to watch, rarely enough to cost nothing.
REFRESH_SECONDS = 0.5


def number(value: Any) -> str:
    """A number as trainwell shows it everywhere.

    Integers get thousands separators; other numbers 4 significant digits (thousands and above
    as whole numbers with separators; below 0.001, 3 significant digits, in scientific notation
    below 0.0001); None is ``-``.

    Example:
        >>> [number(v) for v in (1148, 65834, 34.19372, 414.8416, 0.0903412, 0.00051234, 1e-05, 12345.6, 0.0, None)]
        ['1,148', '65,834', '34.19', '414.8', '0.09034', '0.000512', '1e-05', '12,346', '0', '-']
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.3g}"


def seconds(value: float) -> str:
    """A duration: ``0.03 s``, ``2.6 s``, ``3 min 12 s``.

    Example:
        >>> seconds(0.0342), seconds(2.61), seconds(192.4)
        ('0.03 s', '2.6 s', '3 min 12 s')
    """
    if value >= 60:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes} min {rest} s"
    if value < 0.01:
        return "< 0.01 s"
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s"


def is_terminal() -> bool:
    """Whether stderr, where trainwell writes its progress and logs, is a terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = None,
    **options: Any,
) -> Any:
    """A tqdm bar on stderr when it is a terminal (refreshed every 0.5 s), else a disabled one.

    Use it as tqdm: iterate over it, or call ``update(n)`` and ``close()`` (or use ``with``).
    A disabled bar accepts the same calls and draws nothing, so that piped output stays clean.

    Args:
        iterable: What to iterate over, or None to count with ``update``.
        total: The expected count (e.g. bytes of a download); None when unknown.
        desc: The bar's label.
        unit: What is counted (``batch``, ``B``, ``run``).
        enabled: None draws only on a terminal.
        **options: Other tqdm options (``unit_scale``, ``leave`` ...).

    Example:
        >>> for _ in progress(range(3), desc="demo", enabled=False):
        ...     pass
    """
    from tqdm import tqdm  # torch imports it already: a disabled bar costs no import

    drawn = is_terminal() if enabled is None else enabled
    options.setdefault("mininterval", REFRESH_SECONDS)
    options.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not drawn, **options)

