"""Frozen settings dataclasses read from environment variables.

A field names its variable with :func:`setting`; :func:`read_env` parses each variable by
the field's type (text, a number, a flag, one of a ``Literal``'s values, or a field's own
``parse``), so a default is written once, on the field, and every error names the variable
and the value in one sentence.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError
from .redact import redact

T = TypeVar("T")
# what a number must be, beyond a finite number of its type
Check = Literal["positive", "non_negative", "fraction", "port"]
# (variable, raw value, every variable) -> the field's value
Parser = Callable[[str, str, Mapping[str, str]], Any]


def setting(
    variable: str,
    default: Any = None,
    *,
    check: Check | None = None,
    secret: bool = False,
    parse: Parser | None = None,
) -> Any:
    """A field read from ``variable``; an unset or empty variable leaves ``default``.

    ``secret``: kept out of ``repr`` (and registered for redaction by its settings class).
    """
    return field(
        default=default,
        repr=not secret,
        metadata={"env": variable, "check": check, "parse": parse},
    )


def read_env(cls: type[T], env: Mapping[str, str], **given: Any) -> T:
    """``cls`` with each field from its variable in ``env``; ``given`` values win."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        variable = f.metadata.get("env")
        if variable is None or f.name in given:
            continue
        raw = env.get(variable, "").strip()
        if not raw:
            continue
        parse: Parser | None = f.metadata.get("parse")
        if parse is not None:
            values[f.name] = parse(variable, raw, env)
        else:
            values[f.name] = _parse(variable, raw, hints[f.name], f.metadata.get("check"))
    return cls(**values, **given)


def default_of(cls: type[Any], name: str) -> Any:
    """A field's default, for code that needs it without an instance."""
    for f in fields(cls):
        if f.name == name and f.default is not MISSING:
            return f.default
    raise KeyError(name)


def _parse(variable: str, raw: str, kind: Any, check: Check | None) -> Any:
    kind = _without_none(kind)
    if get_origin(kind) is Literal:
        return choice(variable, raw, get_args(kind))
    if kind is bool:
        value = raw.lower()
        if value not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"{variable} must be true or false, got {raw!r}.")
        return value in ("1", "true", "yes")
    if kind is int or kind is float:
        return number(variable, raw, kind, check)
    if kind is str:
        return raw
    raise TypeError(f"{variable}: no parser for {kind!r}; give the field a parse=")


def choice(variable: str, raw: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``, matched whatever its case."""
    for option in allowed:
        if raw.casefold() == option.casefold():
            return option
    raise ConfigError(f"{variable} must be one of {', '.join(allowed)}; got {raw!r}.")


def number(variable: str, raw: str, kind: type[int] | type[float], check: Check | None) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, got {redact(raw)!r}.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{variable} must be a finite number, got {raw!r}.")
    if check == "positive" and not value > 0:
        raise ConfigError(f"{variable} must be greater than 0, got {value}.")
    if check == "non_negative" and value < 0:
        raise ConfigError(f"{variable} cannot be negative, got {value}.")
    if check == "fraction" and not 0 < value <= 1:
        raise ConfigError(f"{variable} must be a fraction between 0 and 1, got {value}.")
    if check == "port" and not 0 < value < 65536:
        raise ConfigError(f"{variable} must be a port number from 1 to 65535, got {value}.")
    return value


def _without_none(kind: Any) -> Any:
    if get_origin(kind) in (Union, types.UnionType):
        rest = [arg for arg in get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind
