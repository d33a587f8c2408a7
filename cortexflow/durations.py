"""Durations with units: "250ms", "5s", "1m30s", "2h", "7d" (pure functions)."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# Whole-string shape: one or more number+unit parts, units in decreasing size.
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_WHOLE = re.compile(DURATION_PATTERN)
_ORDER = ["d", "h", "m", "s", "ms"]


class DurationError(ValueError):
    """The text is not a duration; the message says what one looks like."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds.

    >>> parse_duration("1m30s")
    90.0
    """
    if not isinstance(text, str):
        raise DurationError(
            f'expected a duration string with a unit such as "250ms", "5s", "1m30s", got {text!r}'
        )
    s = text.strip()
    if not _WHOLE.match(s):
        raise DurationError(
            f'{text!r} is not a duration: write a number with a unit, e.g. "250ms", "5s", '
            '"1m30s", "2h", "7d"'
        )
    total = 0.0
    last = -1
    for number, unit in _PART.findall(s):
        rank = _ORDER.index(unit)
        if rank <= last:
            raise DurationError(
                f'{text!r}: units must go from largest to smallest, each once (e.g. "1h30m")'
            )
        last = rank
        total += float(number) * _UNITS[unit]
    if not math.isfinite(total):
        raise DurationError(f"{text!r} is too long a duration")
    return total


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for display: 90.0 -> "1m30s", 0.25 -> "250ms"."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"not a duration: {seconds!r}")
    ms_total = round(seconds * 1000)
    if ms_total == 0:
        return "0s"
    parts = []
    for unit in _ORDER:
        size = round(_UNITS[unit] * 1000)
        n, ms_total = divmod(ms_total, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
