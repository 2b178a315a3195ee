"""Deliberate misbehaviour: latency, injected errors, dropped connections, throttling.

One seeded draw per request picks at most one fault from the configured shares, so a run
with the same seed and the same request order misbehaves the same way.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.simulator.config import FaultConfig
from orchestrator.simulator.refusal import Refusal

__all__ = ["Fault", "FaultInjector", "MalformedBody"]


class Fault(enum.Enum):
    NONE = "none"
    DROP = "drop"
    """Close the connection before touching any state."""
    ERROR_503 = "p503"
    ERROR_500 = "p500"
    MALFORMED = "p_malformed"
    APPLY_DROP = "apply_drop"
    """Apply the request, then close the connection: the client cannot know the outcome."""


#: (HTTP status, content type, body) of a broken error answer.
MalformedBody = tuple[int, str, bytes]

_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>"
)
_MALFORMED: tuple[MalformedBody, ...] = (
    (502, "text/html", _HTML),
    (503, "application/json", _HTML),  # the content type lies
    (500, "application/json", b'{"error_code": "CSBS.9999", "error_msg": "Operation fai'),
)


class FaultInjector:
    """Holds the current :class:`FaultConfig` (changeable at run time) and draws faults."""

    def __init__(
        self,
        config: FaultConfig,
        seed: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._monotonic = monotonic
        self._buckets: dict[str, list[float]] = {}  # project -> [tokens, last refill]
        self._config = config
        self._bands: tuple[tuple[float, Fault], ...] = ()
        self._set(config)

    @property
    def config(self) -> FaultConfig:
        return self._config

    def update(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Apply knob changes (``POST /_sim/faults``); raises ConfigError on a bad knob."""
        self._set(self._config.updated(changes))
        return self._config

    def _set(self, config: FaultConfig) -> None:
        old = self._config
        self._config = config
        if (old.throttle_rate, old.bucket_size) != (config.throttle_rate, config.bucket_size):
            self._buckets.clear()
        bands: list[tuple[float, Fault]] = []
        edge = 0.0
        for fault, share in (
            (Fault.DROP, config.p_drop),
            (Fault.ERROR_503, config.p503),
            (Fault.ERROR_500, config.p500),
            (Fault.MALFORMED, config.p_malformed),
            (Fault.APPLY_DROP, config.p_apply_drop),
        ):
            if share > 0:
                edge += share
                bands.append((edge, fault))
        self._bands = tuple(bands)

    def applies(self, is_replicate: bool) -> bool:
        return is_replicate or self._config.faults_on == "all"

    def latency(self) -> float:
        config = self._config
        if config.latency_jitter_s:
            return config.latency_s + self._rng.uniform(0, config.latency_jitter_s)
        return config.latency_s

    def retry_after_headers(self) -> dict[str, str]:
        seconds = self._config.retry_after_s
        return {} if seconds is None else {"Retry-After": str(math.ceil(seconds))}

    def throttle(self, project_id: str) -> None:
        """Take a token from the project's bucket or raise the gateway's 429."""
        config = self._config
        if not config.throttle_rate:
            return
        now = self._monotonic()
        size = config.bucket_size
        bucket = self._buckets.get(project_id)
        if bucket is None:
            bucket = self._buckets[project_id] = [float(size), now]
        tokens = min(float(size), bucket[0] + (now - bucket[1]) * config.throttle_rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return
        bucket[0] = tokens
        limit = math.ceil(config.throttle_rate)
        raise Refusal(
            429,
            "APIG.0308",
            "The throttling threshold has been reached: policy user over ratelimit, "
            f"limit:{limit}, time:1 second",
            headers=self.retry_after_headers(),
            kind="throttled",
        )

    def draw(self) -> Fault:
        if not self._bands:
            return Fault.NONE
        draw = self._rng.random()
        for edge, fault in self._bands:
            if draw < edge:
                return fault
        return Fault.NONE

    def malformed(self) -> MalformedBody:
        return self._rng.choice(_MALFORMED)
