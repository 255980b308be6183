"""Command-line flags generated from a config's fields, so that no option can go missing.

Every field of a pydantic config (:class:`~trainwell.recipes.RunConfig` for ``trainwell train``)
becomes a flag ``--<field-name-with-dashes>``, its help taken from the class docstring's
``Args:`` entry, its metavar from the field's type (``{a,b}`` for choices, ``INT``, ``FLOAT``,
``|none`` where None is allowed) and its default from the field. A field added to the config
gets its flag with no table to edit.

The one rule for what gets no flag: a field none of whose types can be written on a command line
(a callable such as ``loss_fn``, a module, any other object) has none; a field that also admits
text, numbers or choices gets a flag for those (``optimizer`` takes ``adamw`` or ``sgd`` from
the command line, a callable only from Python). :func:`excluded_fields` names them.

How values are read: booleans are ``--x``/``--no-x``; lists take several values
(``--loggers csv tensorboard``); mappings are repeatable ``KEY=VALUE`` pairs; everything else is
read as None (``none``), an integer, a number or a choice where the field allows it, and
otherwise passed on as text, so that the config's own validation reports it, with the flag's
name, what is allowed and a "did you mean" for a near-miss choice.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union


@dataclass
class FieldFlag:
    """The flag of one config field.

    Attributes:
        field: The config field it sets.
        flags: Its option strings, the canonical ``--field-name`` first, then any aliases.
        options: The ``add_argument`` keyword arguments.
        group: The help section it is listed in.
    """

    field: str
    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    group: str = "options"

    @property
    def name(self) -> str:
        return self.flags[0]


def flag_name(field_name: str) -> str:
    """``early_stopping_patience`` -> ``--early-stopping-patience``."""
    return "--" + field_name.replace("_", "-")


def members(annotation: Any) -> list[Any]:
    """The types a field's annotation allows, with ``Annotated`` and ``Optional`` unwrapped.

    Example:
        >>> members(typing.Optional[int])
        [<class 'int'>, <class 'NoneType'>]
    """
    if typing.get_origin(annotation) is typing.Annotated:
        return members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in members(arg)]
    return [annotation]


def spellable(member: Any) -> bool:
    """Whether a command line can write a value of this type (text, a number, a choice, a path, a list or mapping of those)."""
    origin = typing.get_origin(member)
    if member in (type(None), bool, int, float, str, Path) or origin is Literal:
        return True
    if origin in (list, tuple, set, frozenset, Sequence):
        return all(spellable(m) for arg in typing.get_args(member) if arg is not Ellipsis for m in members(arg))
    if origin in (dict, Mapping):
        key, value = typing.get_args(member) or (str, Any)
        return key is str
    return False


def excluded_fields(config_type: Any) -> list[str]:
    """The fields that get no flag: those whose every type is one a command line cannot write (callables)."""
    return [name for name, info in config_type.model_fields.items() if not _flag_members(info.annotation)]


def _flag_members(annotation: Any) -> list[Any]:
    allowed = [member for member in members(annotation) if spellable(member)]
    # None alone is no option to offer: Optional[Callable] (loss_fn) gets no flag.
    return allowed if any(member is not type(None) for member in allowed) else []


def docstring_help(config_type: Any) -> dict[str, str]:
    """Each field's description from the ``Args:`` sections of the class and its bases (the subclass's wins)."""
    import docstring_parser

    described: dict[str, str] = {}
    for cls in reversed(config_type.__mro__):
        if cls.__doc__ and cls.__module__.startswith("trainwell"):
            for param in docstring_parser.parse(cls.__doc__).params:
                if param.description:
                    described[param.arg_name] = plain_text(param.description)
    return described


def plain_text(text: str) -> str:
    """Docstring markup made readable in a terminal: ``x`` -> x, :class:`~a.B` -> B.

    Example:
        >>> plain_text('``"sgd"`` (see :class:`~trainwell.TrainConfig`, :func:`trainwell.fit`)')
        '"sgd" (see TrainConfig, trainwell.fit)'
    """
    text = re.sub(r":\w+:`(~?)([\w.]+)`", lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    return " ".join(text.replace("``", "").split())


def field_flags(
    config_type: Any,
    group_of: Callable[[str], str] = lambda name: "options",
    aliases: Mapping[str, Sequence[str]] | None = None,
    extra_help: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> list[FieldFlag]:
    """One :class:`FieldFlag` per field of ``config_type`` a command line can set (see the module's rule).

    Args:
        config_type: A pydantic model class.
        group_of: The help section of a field.
        aliases: Extra option strings of a field, e.g. ``{"run_dir": ["--out"]}``.
        extra_help: Text appended to a field's help (what the command line also accepts).
        metavars: A field's metavar, where the generated one would mislead.

    Returns:
        The flags, in the order of the fields.

    Example:
        >>> from trainwell.config import TrainConfig
        >>> flags = {flag.field: flag for flag in field_flags(TrainConfig)}
        >>> flags["early_stopping_patience"].name, flags["early_stopping_patience"].options["metavar"]
        ('--early-stopping-patience', 'INT|none')
        >>> "loss_fn" in flags
        False
    """
    described = docstring_help(config_type)
    aliases, extra_help, metavars = dict(aliases or {}), dict(extra_help or {}), dict(metavars or {})
    flags = []
    for name, info in config_type.model_fields.items():
        allowed = _flag_members(info.annotation)
        if not allowed:
            continue
        options = _argparse_options(allowed)
        if name in metavars:
            options["metavar"] = metavars[name]
        help_text = described.get(name, "")
        if name in extra_help:
            help_text = f"{help_text.rstrip('.')}; {extra_help[name]}."
        default = info.get_default(call_default_factory=True)
        if default is not None and not callable(default) and default not in ({}, []):
            help_text += f" Default: {_show_default(default)}."
        options["help"] = help_text.replace("%", "%%")
        options["dest"] = name
        options["default"] = argparse.SUPPRESS  # a flag left out does not override the config file
        flags.append(FieldFlag(name, (flag_name(name), *aliases.get(name, ())), options, group_of(name)))
    return flags


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[FieldFlag], titles: Mapping[str, str]) -> None:
    """Add ``flags`` to ``parser``, in one help section per group (titled by ``titles``)."""
    used = {flag.group for flag in flags}
    sections = {group: parser.add_argument_group(title) for group, title in titles.items() if group in used}
    for flag in flags:
        if flag.group not in sections:
            sections[flag.group] = parser.add_argument_group(titles.get(flag.group, flag.group))
        sections[flag.group].add_argument(*flag.flags, **flag.options)


def _argparse_options(allowed: list[Any]) -> dict[str, Any]:
    nullable = type(None) in allowed
    values = [member for member in allowed if member is not type(None)]
    if values == [bool] and not nullable:
        return {"action": argparse.BooleanOptionalAction}
    origin = typing.get_origin(values[0]) if len(values) == 1 else None
    if origin in (list, tuple, set, frozenset, Sequence):
        items = [m for arg in typing.get_args(values[0]) if arg is not Ellipsis for m in members(arg)]
        if nullable:  # a list or None: the single word "none" sets None
            items = [*items, type(None)]
            return {"nargs": "+", "type": value_reader(items), "metavar": _metavar(items), "action": _ListOrNone}
        return {"nargs": "+", "type": value_reader(items), "metavar": _metavar(items)}
    if origin in (dict, Mapping):
        return {"action": _KeyValues, "metavar": "KEY=VALUE"}
    return {"type": value_reader(allowed), "metavar": _metavar(allowed)}


def _metavar(allowed: list[Any]) -> str:
    words = []
    for member in allowed:
        if typing.get_origin(member) is Literal:
            words.append("{" + ",".join(str(choice) for choice in typing.get_args(member)) + "}")
        elif member is bool:
            words.append("{true,false}")
        elif member is not type(None):
            words.append({int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}.get(member, "VALUE"))
    words = list(dict.fromkeys(words))
    if float in allowed and "INT" in words:
        words.remove("INT")  # a float field reads integers too
    if type(None) in allowed:
        words.append("none")
    return "|".join(words)


def value_reader(allowed: list[Any]) -> Callable[[str], Any]:
    """Read one command-line word as the first type of ``allowed`` it fits, else keep the text.

    Text that fits none is passed on unchanged, so that the config's validation reports it with
    the flag's name and what is allowed (one message style for flags and config files).

    Example:
        >>> read = value_reader([int, type(None)])
        >>> read("5"), read("none"), read("five")
        (5, None, 'five')
    """

    def read(text: str) -> Any:
        lowered = text.strip().lower()
        for member in allowed:
            if member is type(None) and lowered in ("none", "null"):
                return None
            if member is bool and lowered in _BOOLEANS:
                return _BOOLEANS[lowered]
            if typing.get_origin(member) is Literal:
                for choice in typing.get_args(member):
                    if str(choice) == text:
                        return choice
        for convert in (int, float):
            if convert in allowed or (convert is int and float in allowed):
                try:
                    return convert(text)
                except ValueError:
                    pass
        if Path in allowed:
            return Path(text)
        return text

    read.__name__ = "value"  # argparse names the type in its messages
    return read


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class _ListOrNone(argparse.Action):
    """A list flag of an option that may also be None: ``--metrics none`` sets None, ``--metrics a b`` a list."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, None if values == [None] else values)


class _KeyValues(argparse.Action):
    """A repeatable ``KEY=VALUE`` flag collected into a dict (a later pair wins over an earlier one)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        try:
            key, value = parse_key_value(values)
        except ValueError as error:
            raise argparse.ArgumentError(self, str(error)) from None
        collected = dict(getattr(namespace, self.dest, None) or {})
        collected[key] = value
        setattr(namespace, self.dest, collected)


def parse_key_value(text: str) -> tuple[str, Any]:
    """``"channels=32,64"`` -> ``("channels", [32, 64])``: ints, floats, true/false, none, comma lists, else text.

    Raises:
        ValueError: the text is not ``KEY=VALUE``.

    Example:
        >>> parse_key_value("channels=32,64"), parse_key_value("dropout=0.1"), parse_key_value("cell=gru")
        (('channels', [32, 64]), ('dropout', 0.1), ('cell', 'gru'))
    """
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key.isidentifier():
        raise ValueError(f"{text!r} is not KEY=VALUE: write e.g. channels=32,64")
    if "," in value:
        return key, [_guess(item) for item in value.split(",") if item.strip()]
    return key, _guess(value)


def _guess(text: str) -> Any:
    text = text.strip()
    named = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in named:
        return named[text.lower()]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _show_default(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "none"
    return str(value)
