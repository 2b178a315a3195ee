"""Log lines as the logging tests read them, and the secrets they must never show."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["SK", "TOKEN", "json_lines"]

SK = "sk-9f8e7d6c5b4a39281706"
TOKEN = "MIIFvgYJKoZIhvcNAQcCoIIFrzCCBasCAQExDTALBglghkgBZQMEAgEw"


def json_lines(data: bytes | str) -> list[dict[str, Any]]:
    raw = data.encode() if isinstance(data, str) else data
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
