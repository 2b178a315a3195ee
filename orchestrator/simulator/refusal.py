"""The one way any layer of the simulator says "answer with this error"."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Refusal"]


class Refusal(Exception):
    """An error answer in the CSBS shape ``{"error_code", "error_msg"}``.

    ``kind`` tags refusals that the counters track (``"duplicate"``); ``body`` replaces the
    CSBS shape where another service answers (IAM's nested ``{"error": {...}}``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        msg: str,
        *,
        headers: Mapping[str, str] | None = None,
        kind: str = "",
        body: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})
        self.kind = kind
        self.body = body


def invalid(msg: str) -> Refusal:
    """A 400 for a malformed request parameter."""
    return Refusal(400, "CSBS.9001", msg)
