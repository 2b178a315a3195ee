"""Pacing: find the request rate the gateway allows, per (endpoint, source project), and hold it.

The API gateway throttles each user per API and project with a token bucket whose rate it does
not publish (429 ``APIG.0308``, usually without ``Retry-After``). Concurrency does not bound a
rate (at 10 ms per answer two requests in flight exceed 100 a second), so each key gets a
:class:`RateController` that spaces its requests evenly at a learned rate.

How the rate is learned. A throttled answer says the bucket was empty when that request
arrived; an accepted one says it held a token. Between two throttled sends ``t_a < t_b`` the
bucket refilled ``rate * (t_b - t_a)`` tokens and every one of them went to a request accepted
in between, give or take one token. So while throttled::

    accepted sends in (t_a, t_b)  =  limit * (t_b - t_a)  +/- 1

which measures the limit directly, to 1/(limit * span) (botocore's adaptive mode measures its
own *send* rate instead and backs off by a factor; we can do better because we see each
answer). Until ``min_tokens`` accepted sends lie in the span, ``(accepted + 1) / span`` is an
upper bound of the limit: the rate is cut to it at once, so refusals fade while the
measurement finishes. The first throttled answer of an episode has no partner: the rate is cut
to what was accepted over the gateway's window (``time:1 second`` in the message).

After a measurement the rate holds at the limit less a margin (the measurement's error plus
``margin``) for ``hold_s``, then probes upward: the step above the held rate starts at
``probe_start`` and doubles every ``probe_double_s``, so a limit that did not move is met
again within a few percent (the bucket is nearly empty after holding just below it: few
refusals), while a limit raised from 40 to 100 is found in a few seconds. The probe grows
only while requests are waiting for their slot (a run that sends less than its rate does not
inflate it). Before anything is known the controller starts at ``start_rate`` and doubles its
rate every round trip (at most every ``start_double_s``), as TCP's slow start does (each
accepted answer adds ``ln 2 / latency``):
hundreds of workers do not open with a burst of refusals, and a run that is never throttled
is unpaced after a few dozen answers.

Pure: no I/O, no sleeping. Time comes from an injected monotonic clock; the pool sleeps for
the delay :meth:`RateController.reserve` returns.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from orchestrator.config.settings import RunSettings
from orchestrator.models import ReplicationTask

__all__ = [
    "PaceKey",
    "PaceSettings",
    "Pacer",
    "RateController",
    "is_throttle",
    "key_label",
    "key_of",
    "throttle_window",
]

#: (endpoint, source project): the gateway's budget is per user, per API and per project, and
#: endpoints are per source region, so the source region stands for the endpoint.
PaceKey = tuple[str, str]

_THROTTLE_CODES = frozenset({"APIG.0308", "APIGW.0308"})
_THROTTLE_MSG = re.compile(r"over ratelimit|throttl", re.IGNORECASE)
_WINDOW = re.compile(r"time:\s*(\d+(?:\.\d+)?)\s*(second|minute|hour)", re.IGNORECASE)
_UNIT_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
#: A probe grown past this is as good as no pacing at all.
_UNPACED = 1e5
_LN2 = math.log(2)


def is_throttle(http_status: int | None, error_code: str | None, error_msg: str | None) -> bool:
    """A 429, or a 503 (or other answer) whose code or message says the gateway throttled."""
    if http_status == 429 or (error_code is not None and error_code in _THROTTLE_CODES):
        return True
    return http_status == 503 and error_msg is not None and bool(_THROTTLE_MSG.search(error_msg))


def throttle_window(error_msg: str | None) -> float | None:
    """The gateway's window in seconds from ``... limit:XX, time:1 second``; None if unsaid."""
    if not error_msg:
        return None
    found = _WINDOW.search(error_msg)
    if found is None:
        return None
    return float(found.group(1)) * _UNIT_S[found.group(2).lower()]


def key_of(task: ReplicationTask) -> PaceKey:
    """The budget a task's requests draw on: its source region's endpoint, its project."""
    return (task.source_region or "default", task.project_id)


def key_label(key: PaceKey) -> str:
    """``endpoint/project``, as progress, the ledger, metrics and the state file name a key."""
    return f"{key[0]}/{key[1]}"


@dataclass(frozen=True, slots=True)
class PaceSettings:
    #: The user's ceiling in requests per second (``--rate``); 0: none.
    ceiling: float = 0.0
    #: Never paced below this (requests per second).
    floor: float = 0.5
    #: Held this far below a measured limit (a share), beyond the measurement's own error.
    margin: float = 0.01
    #: A measurement is final once this many accepted sends lie between two throttled ones...
    min_tokens: int = 80
    #: ...or once the two are this far apart (s); older throttled sends are not used.
    max_span_s: float = 2.0
    #: After a measurement, hold this long before probing upward (s).
    hold_s: float = 4.0
    #: The first probe step above the held rate (a share), doubling every ``probe_double_s``.
    probe_start: float = 0.02
    probe_double_s: float = 0.5
    #: Slow start, before anything is known: from this rate, doubling every round trip but
    #: no faster than every ``start_double_s`` (at 1 ms a round trip, a doubling every
    #: millisecond would overshoot tenfold before the first refusal came back).
    start_rate: float = 20.0
    start_double_s: float = 0.05
    #: The gateway's window when its message does not say (s).
    window_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: RunSettings) -> PaceSettings | None:
        """``--rate`` is the ceiling, under which the pace is learned; ``--pace false``: None
        (not paced). One projection for the pool's replicates and the look-ups' wrapper."""
        return cls(ceiling=settings.limits.rate) if settings.limits.pace else None


class RateController:
    """The pace of one key: :meth:`reserve` before each request, :meth:`on_answer` after."""

    def __init__(
        self,
        settings: PaceSettings,
        clock: Callable[[], float],
        *,
        initial: float | None = None,
        label: str = "",
    ) -> None:
        self.label = label
        self._s = settings
        self._clock = clock
        now = clock()
        self._first_send: float | None = None
        self._next = now  # the next free send slot
        self._accepted: list[float] = []  # send times of requests the gateway let through
        self._throttled: list[float] = []  # send times of throttled requests, this episode
        self._window = settings.window_s
        self._keep_s = self._kept_s()
        #: The last measured limit (requests per second), or the tightest upper bound of it
        #: while a measurement is still short; None before any throttled answer.
        self.limit: float | None = initial
        #: (time, rate) at every decision; for tests, plots and logs.
        self.history: list[tuple[float, float]] = []
        self.accepted = 0
        self.refused = 0
        self._step, self._double_s = settings.probe_start, settings.probe_double_s
        self._slow = initial is None  # slow start until the first throttled answer
        self._base = self._capped(settings.start_rate if initial is None else initial)
        self._probe_at = math.inf if initial is None else now + settings.hold_s
        self._probed = 0.0  # seconds of probing so far (only while requests wait)
        self._last = now
        self._waiting = False
        self._record(now)

    # -- sending ---------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current pace in requests per second (``inf``: unpaced)."""
        return self._rate_at(self._clock())

    @property
    def shown_rate(self) -> float | None:
        """The pace rounded for people and files; None when unpaced."""
        rate = self.rate
        return None if math.isinf(rate) else round(rate, 1)

    def reserve(self) -> float:
        """Book the next send slot; the seconds to wait for it (0: send now).

        Slots are evenly spaced and never lie in the past: after a pause the next request
        goes at once and the one after it an interval later, never a burst. Book one slot at
        a time (:class:`~orchestrator.engine.pace_gate.PaceGate` queues the rest): a slot
        booked ahead keeps the rate of when it was booked."""
        return self.take(waiting=True)

    def wait_time(self) -> float:
        """Seconds until the next slot at the current rate (0: one is free now)."""
        now = self._clock()
        rate = self._rate_at(now)
        if math.isinf(rate):
            return 0.0
        return max(0.0, self._next - now)

    @property
    def unpaced(self) -> bool:
        return math.isinf(self._rate_at(self._clock()))

    def try_take(self) -> bool:
        """Take the next slot if it is due now (one clock read: this is on every request's
        path); False if it is not."""
        now = self._clock()
        if now < self._probe_at:  # _rate_at's first branch, inline: this runs every request
            rate = math.inf if self._base >= _UNPACED else self._base
        else:
            rate = self._rate_at(now)
        if rate == math.inf:
            if self._first_send is None:
                self._first_send = now
            return True
        if self._next > now:
            return False
        self._next = now + 1.0 / rate
        self._waiting = False
        if self._first_send is None:
            self._first_send = now
        return True

    def take(self, *, waiting: bool) -> float:
        """Take the next slot: its delay from now (0 once :meth:`wait_time` has elapsed).
        ``waiting``: other requests wait behind this one (the probe grows only then)."""
        now = self._clock()
        rate = self._rate_at(now)
        if math.isinf(rate):
            self._waiting = False
            if self._first_send is None:
                self._first_send = now
            return 0.0
        slot = max(now, self._next)
        self._next = slot + 1.0 / rate
        self._waiting = waiting or slot > now
        if self._first_send is None:
            self._first_send = slot
        return slot - now

    def _rate_at(self, now: float) -> float:
        if now < self._probe_at:
            return math.inf if self._base >= _UNPACED else self._base
        if self._throttled:
            self._throttled.clear()  # a new episode: the bucket may have refilled since
        if self._waiting:  # requests waited for their slot until the last one booked
            self._probed += max(0.0, min(now, self._next) - max(self._last, self._probe_at))
        self._last = now
        grown = self._base * (1.0 + self._step * 2.0 ** (self._probed / self._double_s))
        capped = self._capped(grown)
        return math.inf if capped >= _UNPACED else capped

    def _capped(self, rate: float) -> float:
        if self._s.ceiling > 0:
            rate = min(rate, self._s.ceiling)
        return max(self._s.floor, rate)

    # -- learning --------------------------------------------------------------------------

    def on_answer(self, sent_at: float, *, throttled: bool, window_s: float | None = None) -> None:
        """Feed one answer: ``sent_at`` is the monotonic time its request went out; a request
        that reached the gateway and was not throttled counts as accepted (it took a token)."""
        accepted = self._accepted
        if accepted and accepted[0] < sent_at - self._keep_s:
            self._trim(sent_at)
        if not throttled:
            self.accepted += 1
            if self._slow:  # (the clock is read only here: an accepted answer needs no now)
                trip = max(self._clock() - sent_at, self._s.start_double_s)
                self._base = self._capped(self._base + _LN2 / trip)
            if not accepted or sent_at >= accepted[-1]:
                accepted.append(sent_at)
            else:
                bisect.insort(accepted, sent_at)
            return
        now = self._clock()
        self.refused += 1
        if window_s is not None:
            self._window = window_s
            self._keep_s = self._kept_s()
        self._slow = False
        partner = self._partner(sent_at)
        bisect.insort(self._throttled, sent_at)
        if partner is None:
            self._first_cut(sent_at, now)
            return
        span = sent_at - partner
        got = self._count(partner, sent_at)
        if got >= self._s.min_tokens or span >= self._s.max_span_s:
            self.limit = got / span
            target = self.limit * (1.0 - self._s.margin) - 1.0 / span
            self._hold(target, now)
        elif (upper := (got + 1) / span) < self._rate_at(now):
            self.limit = upper  # the best known until the measurement is complete
            self._hold(upper, now)

    def _partner(self, sent_at: float) -> float | None:
        """The earliest throttled send of this episode before ``sent_at`` within the span."""
        i = bisect.bisect_left(self._throttled, sent_at - self._s.max_span_s)
        if i < len(self._throttled) and self._throttled[i] < sent_at:
            return self._throttled[i]
        return None

    def _first_cut(self, sent_at: float, now: float) -> None:
        """No partner yet: cut to what the gateway accepted over its window, but by half of
        what was sent at most (a window that accepted nothing is no reason to crawl), if
        lower; stop growing either way (the next throttled answer measures)."""
        # Over the gateway's window, or since the first request if that is shorter (a cut
        # at the start must not count the time before anything was sent).
        start = sent_at if self._first_send is None else self._first_send
        span = min(self._window, max(0.01, sent_at - start))
        accepted = self._count(sent_at - span, sent_at)
        refused = len(self._throttled) - bisect.bisect_left(self._throttled, sent_at - span)
        recent = max(accepted, (accepted + refused) / 2) / span
        if self.limit is None:
            self.limit = recent  # a first figure (it may include the bucket's burst)
        self._hold(min(recent, self._rate_at(now)), now)

    def _hold(self, rate: float, now: float) -> None:
        self._base = self._capped(rate)
        self._step, self._double_s = self._s.probe_start, self._s.probe_double_s
        self._probe_at = now + self._s.hold_s
        self._probed = 0.0
        self._record(now)

    def _count(self, after: float, before: float) -> int:
        """Accepted sends strictly between two times."""
        lo = bisect.bisect_right(self._accepted, after)
        hi = bisect.bisect_left(self._accepted, before)
        return max(0, hi - lo)

    def _trim(self, now: float) -> None:
        # In whole seconds at a time: at thousands of answers a second, deleting the head
        # of the list on every answer would cost more than everything else here. (on_answer
        # calls this only once the head is older than ``_keep_s``: the same test.)
        horizon = now - max(self._s.max_span_s, self._window) - 1.0
        if self._accepted and self._accepted[0] < horizon - 1.0:
            del self._accepted[: bisect.bisect_left(self._accepted, horizon)]

    def _kept_s(self) -> float:
        """How far back from an answer's send the accepted sends are kept, plus the second
        :meth:`_trim` waits for before it deletes."""
        return max(self._s.max_span_s, self._window) + 2.0

    def _record(self, now: float) -> None:
        self.history.append((now, self._base))


class Pacer:
    """The rate controllers of a run, one per key, created on first use."""

    def __init__(
        self,
        settings: PaceSettings,
        clock: Callable[[], float],
        *,
        initial: Mapping[str, float] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._initial = dict(initial or {})
        self._controllers: dict[PaceKey, RateController] = {}

    def __getitem__(self, key: PaceKey) -> RateController:
        controller = self._controllers.get(key)
        if controller is None:
            start = self._initial.get(key_label(key))
            controller = RateController(
                self._settings, self._clock, initial=start, label=key_label(key)
            )
            self._controllers[key] = controller
        return controller

    def __iter__(self) -> Iterator[tuple[PaceKey, RateController]]:
        return iter(list(self._controllers.items()))

    def learned(self) -> dict[str, float]:
        """The measured limit per key label (keys never throttled are left out)."""
        return {key_label(key): round(c.limit, 2) for key, c in self if c.limit is not None}

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per key label: the measured ``limit`` (None: never throttled), the ``rate`` now
        (None: unpaced), and the requests ``accepted`` and ``throttled``."""
        return {
            c.label: {
                "limit": None if c.limit is None else round(c.limit, 2),
                "rate": c.shown_rate,
                "accepted": c.accepted,
                "throttled": c.refused,
            }
            for _, c in self
        }
