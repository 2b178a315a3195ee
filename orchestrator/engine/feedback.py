"""What an answer tells the limits: the region gate (overload or not) and the pace of the
request's endpoint and project (throttled, or it took a token)."""

from __future__ import annotations

from orchestrator.engine.overload import RegionGate
from orchestrator.engine.pace import RateController, is_throttle, throttle_window
from orchestrator.engine.progress import Progress
from orchestrator.errors import ApiError, TransientApiError, TransportError

__all__ = ["tell_gate", "tell_pace", "throttled"]


def throttled(exc: ApiError) -> bool:
    return is_throttle(exc.http_status, exc.error_code, exc.error_msg)


def tell_gate(gate: RegionGate, exc: ApiError) -> None:
    """503s, timeouts and cut connections signal overload; any other answer does not. A
    throttled answer (429) says the *rate* is too high, not the region's concurrency: the
    rate controller owns it, and it never opens a breaker."""
    if isinstance(exc, TransientApiError) and not throttled(exc):
        gate.on_overload()
    else:
        gate.on_other()


def tell_pace(
    pace: RateController | None, sent_at: float, exc: ApiError | None, progress: Progress
) -> None:
    """Feed the answer to the task's rate controller: throttled, or it took a token."""
    if pace is None:
        return
    if exc is None:
        pace.on_answer(sent_at, throttled=False)
        if pace.accepted % 64 == 0:  # (the probe moves it between throttled answers)
            progress.set_pace(pace.label, pace.shown_rate)
        return
    if isinstance(exc, TransportError):
        return  # no answer: nothing is known about the bucket
    if throttled(exc):
        pace.on_answer(sent_at, throttled=True, window_s=throttle_window(exc.error_msg))
        progress.set_pace(pace.label, pace.shown_rate)
    else:
        pace.on_answer(sent_at, throttled=False)
