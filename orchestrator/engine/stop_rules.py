"""The rules that stop a run before its work is done, each a small unit that answers with
the :class:`~orchestrator.ledger.format.StopReason` it calls for (or None).

* :class:`FailureThreshold`: too many pairs failed (S3 Batch Operations' rule: at least
  ``min_results`` final results and more than ``percent`` of them failed).
* :class:`Unreachable`: before any answer, no request could connect to the service for
  ``after_s`` seconds, or a pair gave up without one having connected.

The deadline (``--max-duration``), signals and refused credentials stop a run directly; the
pool applies every rule and records the first reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from orchestrator.errors import TransportError
from orchestrator.ledger.format import StopReason
from orchestrator.models import ResultStatus

__all__ = ["FailureThreshold", "Unreachable"]


class FailureThreshold:
    """Stop once more than ``percent`` of at least ``min_results`` final results failed."""

    __slots__ = ("_min_results", "_percent")

    def __init__(self, min_results: int, percent: float) -> None:
        self._min_results = min_results
        self._percent = percent

    def check(self, counts: Counter[str]) -> StopReason | None:
        final = sum(counts.values()) - counts[ResultStatus.REJECTED]
        if final < self._min_results:
            return None
        if counts[ResultStatus.FAILED] * 100.0 > self._percent * final:
            return StopReason.THRESHOLD
        return None


class Unreachable:
    """A service no request has connected to since the first refusal, until an answer.

    After the first answer nothing counts: a later refusal is an outage to ride out with
    retries, not a misaddressed service. ``after_s`` None turns the rule off."""

    __slots__ = ("_after_s", "_clock", "_since", "answered", "last_error")

    def __init__(self, after_s: float | None, clock: Callable[[], float]) -> None:
        self._after_s = after_s
        self._clock = clock
        self._since = 0.0
        self.answered = False
        #: The last connection error before any answer (what the stop message shows).
        self.last_error: TransportError | None = None

    def refused(self, exc: TransportError) -> StopReason | None:
        """A request could not connect; UNREACHABLE once that has lasted ``after_s``."""
        if self.answered:
            return None
        now = self._clock()
        if self.last_error is None:
            self._since = now
        self.last_error = exc
        if self._after_s is not None and now - self._since >= self._after_s:
            return StopReason.UNREACHABLE
        return None

    def gave_up(self) -> StopReason | None:
        """A pair gave up: UNREACHABLE if it never connected and nothing ever answered."""
        if self.last_error is not None and self._after_s is not None and not self.answered:
            return StopReason.UNREACHABLE
        return None
