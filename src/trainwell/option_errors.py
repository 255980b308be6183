"""Errors about options: pydantic's report of a config turned into one message per option.

Each line names the option (as the reader spells it: a keyword, or a command-line flag), the
value received, what is allowed and, for a near miss, the option or choice that was meant.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ValidationError

from trainwell.exceptions import ConfigError

# What a device option may name (TrainConfig.device); its message lists the choices.
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
# What a metric name may be (TrainConfig.monitor): one word, described as a metric name.
METRIC_NAME_PATTERN = r"^\S+$"


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
    for problem in _one_per_field(problems):
        field = str(problem["loc"][0]) if problem["loc"] else "config"
        value = problem.get("input")
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_option_message(names.get(field, field), sorted(config_type.model_fields), names))
            continue
        # A list's bad item is shown as the item it is (metrics[0]=1), not as if it were the option;
        # a flag's items follow the flag on the command line (--loggers csv wandb: --loggers='wandb').
        shown = names.get(field, field)
        if field not in names:
            shown += "".join(f"[{part}]" for part in problem["loc"][1:] if isinstance(part, int))
        if problem["type"] == "trainwell_choice":  # a validator's own message, which names the fix
            lines.append(f"{shown}={_show(value)}: {problem['msg']}")
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


def _one_per_field(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A field with a Union type reports once per member: the member of the value's own type speaks for it.

    That is the first report that is not a mismatch (``1.5`` for an integer or a fraction is out
    of the fraction's range, not of the wrong type); else the first type mismatch (``True`` for
    ``"auto"`` or a number is of the wrong type, not a wrong choice); else the first report.
    """

    def rank(problem: dict[str, Any]) -> int:
        kind = problem["type"]
        return 2 if kind == "literal_error" else 1 if kind.endswith("_type") else 0

    chosen: dict[str, dict[str, Any]] = {}
    for problem in problems:
        field = str(problem["loc"][0]) if problem["loc"] else "config"
        if field not in chosen or rank(problem) < rank(chosen[field]):
            chosen[field] = problem
    return list(chosen.values())


def _literal_choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return [choice for arg in typing.get_args(annotation) for choice in _literal_choices(arg)]


def _unknown_option_message(shown: str, known: list[str], names: Mapping[str, str]) -> str:
    spelled = [names.get(field, field) for field in known]
    close = difflib.get_close_matches(shown, spelled, n=3, cutoff=0.6)
    # Two letters swapped is the likeliest typo: 'modle' is 'model', not 'mode'.
    close = [c for c in close if sorted(c) == sorted(shown)] + close
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
        if getattr(item, "pattern", None) == DEVICE_PATTERN:
            return "'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'"
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # StrictFloat, a Union member with its own bounds: the type, with its constraints
        base, *extra = typing.get_args(annotation)
        constraints = [item for entry in extra for item in getattr(entry, "metadata", [entry])]
        return describe_allowed(base, [*metadata, *constraints])
    if origin in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        described = " or ".join(describe_allowed(arg, metadata) for arg in members)
        return described + (" or None" if type(None) in typing.get_args(annotation) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin is list:
        return "a list, each item " + describe_allowed(typing.get_args(annotation)[0])
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _with_bounds("an integer", bounds)
    if annotation is float:
        return _with_bounds("a number", bounds)
    if annotation is Path:
        return "a directory path"
    if annotation is str:
        named = any(getattr(item, "pattern", None) == METRIC_NAME_PATTERN for item in metadata)
        return "a metric name such as 'val_loss'" if named else "a string"
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
