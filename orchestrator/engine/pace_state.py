"""The learned paces kept between runs, under ``"pace"`` in the ``--state-file``.

The state file already holds each destination region's learned concurrency
(``{"cn-east-2": 12, ...}``, see :mod:`orchestrator.engine.overload`); the measured rate of each
``endpoint/project`` goes beside it, so the next night starts at the rate the service allowed
last night instead of finding it again::

    {"cn-east-2": 12, "pace": {"cn-north-1/0a1b...": 97.3}}

As with the limits, an absent or unreadable file means nothing learned (a warning, never a
reason to skip a night), and writing is atomic and merges with what the file holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import structlog

from orchestrator.atomic_file import replace_file

__all__ = ["load_learned_rates", "save_learned_rates"]

log = structlog.get_logger("orchestrator.pace")

_KEY = "pace"


def _read(path: str) -> dict[str, Any] | None:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("pace.state_unreadable", path=path, error=str(exc))
        return None
    if not isinstance(data, dict):
        log.warning("pace.state_unreadable", path=path, error="not a JSON object")
        return None
    return data


def load_learned_rates(path: str | None) -> dict[str, float]:
    """The rates a previous run measured, by ``endpoint/project``."""
    if path is None:
        return {}
    data = _read(path) or {}
    rates = data.get(_KEY)
    if not isinstance(rates, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in rates.items()
        # bool is an int to Python, but ``true`` is no rate.
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    }


def save_learned_rates(path: str | None, learned: Mapping[str, float | None]) -> None:
    """Merge the measured rates (None: not measured this run, the old value stays) into the
    file, keeping everything else it holds; atomic."""
    measured = {k: round(v, 2) for k, v in learned.items() if v is not None and v > 0}
    if path is None or not measured:
        return
    data = _read(path)
    if data is None:
        data = {}  # unreadable: start over (the limits were just rewritten the same way)
    rates = data.get(_KEY)
    merged = dict(rates) if isinstance(rates, dict) else {}
    merged.update(measured)
    data[_KEY] = merged
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_file(target, orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    except OSError as exc:
        log.warning("pace.state_unwritable", path=path, error=str(exc))
