"""Credentials for the service calls: what an authenticator is, and how a secret travels.

Every way to authenticate is an :class:`Authenticator`: the client hands it each request's
headers to complete (:meth:`~Authenticator.apply`) and asks it, once per request, whether a
401 is worth one more try (:meth:`~Authenticator.on_unauthorized`). Only a token that was
refreshed justifies that second try; a signed request refused once is refused for good (five
bad signatures lock the key for five minutes, so AK/SK never retries a 401).

The authenticators: AK/SK signing (:mod:`orchestrator.service.aksk`), a static or an IAM
password token (:mod:`orchestrator.service.tokens`), an ECS's temporary key
(:mod:`orchestrator.service.credentials`, which also says where credentials come from).

None of them knows an HTTP library: a token provider fetches through the ``post`` callable
the client passes in, so that the client stays the one place where responses become
exceptions. Secrets travel as :class:`Secret` and are revealed only where a header is written.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Final, Protocol

import yarl

__all__ = [
    "HEADER_SAFE",
    "PROJECT_HEADER",
    "SECURITY_TOKEN_HEADER",
    "TOKEN_HEADER",
    "Authenticator",
    "PostJson",
    "Secret",
    "utcnow",
]

#: ``post(url, body) -> (response headers, response body)`` for a 2xx answer; any other answer
#: or transport failure raises an :mod:`orchestrator.errors` exception. Supplied by the client.
PostJson = Callable[[str, bytes], Awaitable[tuple[Mapping[str, str], bytes]]]

PROJECT_HEADER: Final = "X-Project-Id"
SECURITY_TOKEN_HEADER: Final = "X-Security-Token"  # noqa: S105 - a header name, not a secret
TOKEN_HEADER: Final = "X-Auth-Token"  # noqa: S105 - a header name, not a secret
#: A token goes into a header as it is: printable ASCII only (no CR/LF to split it).
HEADER_SAFE: Final = re.compile(r"[\x20-\x7e]+")


def utcnow() -> datetime:
    """The authenticators' default clock (tests pass their own)."""
    return datetime.now(UTC)


class Secret:
    """A string that never shows itself in ``repr``, ``str``, f-strings, logs or tracebacks.

    Call :meth:`reveal` at the one place the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the value somewhere we do not control.
        raise TypeError("a Secret cannot be pickled")


class Authenticator(Protocol):
    """How the client authenticates a request. Implementations mutate ``headers`` in place."""

    async def apply(
        self,
        post: PostJson,
        *,
        method: str,
        url: yarl.URL,
        headers: dict[str, str],
        body: bytes,
        project_id: str,
    ) -> None:
        """Complete ``headers`` for this request; ``project_id`` is the path's project."""

    async def on_unauthorized(
        self, post: PostJson, project_id: str, used: Mapping[str, str]
    ) -> bool:
        """A 401 answered a request sent with ``used``. True: credentials were renewed, send the
        request once more (the client never asks twice for one request). False: final."""
