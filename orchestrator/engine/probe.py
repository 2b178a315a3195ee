"""The credential probes: until a first answer shows that the credentials work, only a few
requests go out.

Refused credentials then cost a few 401s, not one per worker: the service locks an access
key after five bad signatures in a row, for everyone using it, for five minutes.
"""

from __future__ import annotations

import anyio

from orchestrator.engine.stop_rules import Unreachable
from orchestrator.engine.stop_signal import StopSignal

__all__ = ["PROBES", "CredentialProbes"]

#: Requests in flight before any answer has shown that the credentials work.
PROBES = 4


class CredentialProbes:
    """At most :data:`PROBES` requests out until one is answered."""

    def __init__(self, stop: StopSignal, unreachable: Unreachable) -> None:
        self._stop = stop
        self._unreachable = unreachable
        self._verified = anyio.Event()
        self._probes = 0
        self._probe_freed = anyio.Event()

    async def take(self) -> bool:
        """True if this request is one of the few sent before the credentials are verified;
        False once they are. Waits while :data:`PROBES` are out."""
        while not self._verified.is_set():
            if self._probes < PROBES:
                self._probes += 1
                return True
            await self._stop.wait_or_stop(self._probe_freed.wait())
        return False

    def end(self, *, verified: bool) -> None:
        """A probe came back: ``verified`` if the service answered it (any answer)."""
        self._probes -= 1
        if verified:
            self._verified.set()
            self._unreachable.answered = True
        self._probe_freed.set()
        self._probe_freed = anyio.Event()
