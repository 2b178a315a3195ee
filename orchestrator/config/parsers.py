"""The parsers of setting values: text (a flag, an environment variable, a config value
turned to text) to a value, or a ``ValueError`` that says what a good value looks like."""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "SERVICES",
    "as_is",
    "boolean",
    "finite_float",
    "non_negative_float",
    "non_negative_seconds",
    "percent",
    "positive_float",
    "positive_int",
    "positive_seconds",
    "rate",
    "service",
    "whole_number",
]


def as_is(value: Any) -> Any:
    """A value handed over unparsed: a table or list of the file, or a knob whose own
    module checks it (``[discover]``, ``[simulator]``)."""
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _more_than_zero(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def non_negative_float(text: str) -> float:
    return _not_negative(finite_float(text))


def positive_float(text: str) -> float:
    return _more_than_zero(finite_float(text))


#: What a refused duration is told: a plain number is seconds, a unit may be given.
SECONDS_HINT = "must be a number of seconds, or with a unit: 90s, 30m, 6h"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def _seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``6h``, ``1d`` or ``1h30m`` as seconds; a plain number is
    seconds, so a value written before units were accepted reads as it did."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or _DURATION_PART.sub("", value):
            raise ValueError(SECONDS_HINT) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number")
    return seconds


def non_negative_seconds(text: str) -> float:
    return _not_negative(_seconds(text))


def positive_seconds(text: str) -> float:
    return _more_than_zero(_seconds(text))


def rate(text: str) -> float:
    """``auto`` (learn the rate, no ceiling) is 0; else a ceiling in requests per second."""
    if text.strip().lower() == "auto":
        return 0.0
    try:
        float(text)
    except ValueError:
        raise ValueError("must be a number of requests per second, or auto") from None
    return non_negative_float(text)


def percent(text: str) -> float:
    value = finite_float(text)
    if not 0 < value <= 100:
        raise ValueError("must be a percentage in (0, 100]")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def service(text: str) -> str:
    value = text.strip().lower()
    if value not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}")
    return value


#: The backup services spoken: CSBS v1 (orchestrator/client.py), CBR v3 (service/cbr.py).
SERVICES = ("csbs", "cbr")
