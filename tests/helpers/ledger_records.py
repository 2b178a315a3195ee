"""Ledger records and lines for the ledger's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from orchestrator.ledger.file import iter_records
from orchestrator.ledger.format import SCHEMA_VERSION

__all__ = ["read_all", "rec", "record_line"]


def rec(i: int, event: str = "attempt") -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "event": event,
        "ts": "2025-01-31T23:59:59.123456+00:00",
        "run_id": "r1",
        "project_id": "0" * 32,
        "checkpoint_item_id": f"00000000-0000-4000-8000-{i:012d}",
        "destination_region": "cn-east-2",
        "destination_project_id": "1" * 32,
        "attempt": 1,
    }


def record_line(record: dict[str, Any]) -> bytes:
    """``record`` as the ledger holds it: one JSON line."""
    return orjson.dumps(record) + b"\n"


def read_all(path: Path) -> list[dict[str, Any]]:
    return list(iter_records(path))
