"""Ledger lines for tests that fold a ledger: pairs, attempts, results, copy statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from orchestrator.models import PairKey

PROJECT = "a" * 32
DEST = "b" * 32


def item(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def key(n: int, region: str = "cn-east-2") -> PairKey:
    return (PROJECT, item(n), region)


def line(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "event": event,
        "ts": "2025-01-31T23:59:59.123456+00:00",
        "run_id": "r",
    } | fields


def pair(n: int, region: str = "cn-east-2") -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "checkpoint_item_id": item(n),
        "destination_region": region,
        "destination_project_id": DEST,
    }


def attempt(n: int, number: int = 1, **kw: Any) -> dict[str, Any]:
    return line("attempt", **pair(n, **kw), attempt=number)


def result(n: int, status: str, record_id: str | None = None, **kw: Any) -> dict[str, Any]:
    return line(
        "result",
        **pair(n, **kw),
        source_region="cn-north-1",
        status=status,
        replication_record_id=record_id,
        http_status=200,
        error_code=None,
        error_msg=None,
        attempts=1,
        manifest_line=n + 1,
    )


def copy_status(
    n: int, status: str, record_id: str | None, region: str = "cn-east-2"
) -> dict[str, Any]:
    return line(
        "copy_status", **pair(n, region), replication_record_id=record_id, copy_status=status
    )


def write(path: Path, *records: dict[str, Any], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + tail)
    return path


RID = "042cd047-a7c9-4905-a859-402950ac8440"
RID2 = "142cd047-a7c9-4905-a859-402950ac8441"
