"""Up-front checks of configuration values: each failure is a ConfigError naming the one field.

Every public constructor (ShareConsumer, App, App.handler, ShareAdmin) checks its options here
before using them, so a wrong type or range reads "concurrency must be an int >= 1, got '5'"
instead of a TypeError from a comparison deep inside.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from aioshare.protocol.errors import ConfigError

__all__ = ["check_bootstrap", "check_int", "check_name", "check_seconds"]


def _fail(field: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{field} must be {expected}, got {value!r}")


def check_int(field: str, value: object, minimum: int, *, optional: bool = False) -> None:
    """`value` is an int (not a bool) >= `minimum` (or None when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" (or None)" if optional else "")
        raise _fail(field, expected, value)


def check_seconds(field: str, value: object, *, positive: bool = False, optional: bool = False) -> None:
    """`value` is a finite number of seconds, >= 0 (> 0 when `positive`), or None when `optional`."""
    if optional and value is None:
        return
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        expected = f"a finite number of seconds {'> 0' if positive else '>= 0'}" + (
            " (or None)" if optional else ""
        )
        raise _fail(field, expected, value)


def check_name(field: str, value: object, *, optional: bool = False) -> None:
    """`value` is a non-empty string (or None when `optional`)."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "a non-empty string" + (" (or None)" if optional else ""), value)


def check_bootstrap(value: object) -> None:
    """`value` is "host:port[,host:port...]" or an iterable of such strings, not empty."""
    items: list[object]
    if isinstance(value, str):
        items = [s for s in value.split(",") if s.strip()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    elif isinstance(value, Iterable):
        return  # a one-shot iterable: parsed (and checked) where it is used
    else:
        raise _fail("bootstrap_servers", 'a "host:port[,...]" string or a list of them', value)
    if not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise _fail("bootstrap_servers", 'a non-empty "host:port[,...]" string or list of them', value)
