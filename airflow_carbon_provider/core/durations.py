"""Parse and format the short durations the command line and operators accept (``90m``, ``4h``)."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


class DurationError(ValueError):
    """Raised for a duration that is malformed."""


def parse_duration(text: str | timedelta, what: str = "duration") -> timedelta:
    """Turn ``'30m'``, ``'4h'``, ``'1.5d'`` (units s, m, h, d) or a timedelta into a timedelta."""
    if isinstance(text, timedelta):
        return text
    match = _PATTERN.match(str(text))
    if not match and str(text).strip().startswith("-"):
        raise DurationError(f"{what} {text!r} is negative; give a duration of zero or more, e.g. '0h' or '6h'")
    if not match:
        raise DurationError(
            f"{what} {text!r} is not a duration; write a number and a unit s, m, h or d, e.g. '4h'"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    """Format a timedelta the way :func:`parse_duration` reads it (``'4h'``, ``'90m'``)."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
