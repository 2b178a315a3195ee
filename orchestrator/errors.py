"""The one exception tree of csbs-orchestrator, and the table that classifies service errors.

::

    OrchestratorError
    ├── ConfigError              bad flags, config file or environment (exit: usage)
    ├── ManifestError            a manifest that cannot be read at all (file, line, field)
    │   └── ManifestChangedError the manifest's bytes differ from what the run planned
    ├── LedgerError              the ledger cannot be opened, read or written
    │   ├── LedgerLockedError    another process holds the ledger
    │   └── LedgerWriteError     a write or fsync failed (disk full, I/O error)
    ├── ScheduleError            the scheduler's state or lock file cannot be read or written
    ├── ServiceUnreachableError  no request could connect for --unreachable-after (exit 4)
    └── ApiError                 the service (or the road to it) refused a call
        ├── AuthError            credentials rejected for good (401 after a refresh, 403)
        ├── AlreadyReplicatedError  the item has, or is getting, a replica in that region
        ├── PermanentApiError    4xx that retrying cannot fix
        └── TransientApiError    503, 429, 5xx, 408/425: worth another try
            └── TransportError   no HTTP answer at all (refused, cut, timed out)

Lower-level exceptions (aiohttp, OSError) are mapped into this tree at one boundary
each (the client, the ledger) and chained with ``from``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "AlreadyReplicatedError",
    "ApiError",
    "AuthError",
    "Classification",
    "ConfigError",
    "ErrorTable",
    "LedgerError",
    "LedgerLockedError",
    "LedgerWriteError",
    "ManifestChangedError",
    "ManifestError",
    "OrchestratorError",
    "PermanentApiError",
    "ScheduleError",
    "ServiceUnreachableError",
    "TransientApiError",
    "TransportError",
    "throttle_window_s",
]


class OrchestratorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(OrchestratorError):
    """Flags, config file or environment are wrong; the message says what to fix."""


class ManifestError(OrchestratorError):
    """A manifest problem tied to a place in a file."""

    def __init__(self, path: str, line: int | None, field_name: str | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.field_name = field_name
        self.reason = reason
        where = path if line is None else f"{path}:{line}"
        what = f"field {field_name!r}: " if field_name else ""
        super().__init__(f"{where}: {what}{reason}")


class ManifestChangedError(ManifestError):
    """The manifest file no longer holds the bytes the run validated (rewritten, truncated,
    appended to): nothing read after the change is used."""


class LedgerError(OrchestratorError):
    """The ledger file cannot be opened, parsed or written."""


class LedgerLockedError(LedgerError):
    """Another process is writing this ledger."""


class LedgerWriteError(LedgerError):
    """Appending or fsyncing failed; lines after the last durable one may be lost."""


class ScheduleError(OrchestratorError):
    """The scheduler's state file or lock file cannot be read or written."""


class ServiceUnreachableError(OrchestratorError):
    """No request reached the service before ``--unreachable-after``: nothing was sent."""


class ApiError(OrchestratorError):
    """A CSBS call did not succeed. Carries what the ledger needs to record."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id


class AuthError(ApiError):
    """Credentials were refused and a refresh did not help: stop, do not retry."""


class AlreadyReplicatedError(ApiError):
    """The service refused because the item already has (or is getting) a replica in the
    destination region. An outcome of its own, not a failure."""


class PermanentApiError(ApiError):
    """A final answer: retrying the same request cannot succeed.

    ``unrecognised``: the error table knows neither the code nor the message, so the
    answer's meaning is a guess (a 400 may be a refusal for a replica that exists).
    """

    def __init__(self, message: str, *, unrecognised: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.unrecognised = unrecognised


class TransientApiError(ApiError):
    """Overload, throttling or a server fault: retry with backoff.

    ``retry_after`` is the server's own hint in seconds, when it gave one; ``window_s`` the
    length of the gateway's throttling window (``APIG.0308 ... time:1 second``), when the
    answer named one: a retry inside the same window is refused again.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        window_s: float | None = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.window_s = window_s


class TransportError(TransientApiError):
    """No HTTP answer. ``maybe_applied`` is true when the request may have reached the server
    (sent, then cut or timed out): its outcome is unknown and it must be reconciled, never
    blindly re-sent."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class Classification(enum.Enum):
    """What an error answer from the service means for the pair that caused it."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    ALREADY_REPLICATED = "already_replicated"
    AUTH = "auth"


_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

# Codes whose meaning does not follow from the HTTP status alone. CSBS has no public code for
# "already replicated"; CBR's BackupService.1009 is the default, and configuration may add more.
_DEFAULT_CODES: Mapping[str, Classification] = {
    "BackupService.1009": Classification.ALREADY_REPLICATED,
    "CSBS.6031": Classification.TRANSIENT,  # a manual copy is executing: wait and retry
    "CSBS.2003": Classification.TRANSIENT,  # item busy (backing up, restoring)
    # "Service over limit": the number of backup *policies* reached its quota. Only the user
    # can fix it (delete a policy, or raise the quota): final, never retried.
    "CSBS.0001": Classification.PERMANENT,
    # Documented final refusals: known, so an answer with one of them is never mistaken for
    # an unknown 400 (which makes the pool ask the service's records before failing a pair).
    "CSBS.4000": Classification.PERMANENT,  # item not available (its status forbids it)
    "CSBS.9001": Classification.PERMANENT,  # invalid parameter
    "CSBS.9006": Classification.PERMANENT,  # quota exceeded
    "BackupService.1005": Classification.PERMANENT,  # destination does not support it
    "BackupService.1011": Classification.PERMANENT,  # destination project not supported
    "BackupService.1012": Classification.PERMANENT,  # maximum number of replicas
    "APIG.0308": Classification.TRANSIENT,
    "APIGW.0308": Classification.TRANSIENT,
    "APIGW.0303": Classification.AUTH,  # clock skew: retrying with the same clock is futile
}

# What the operator should do about a final error whose code alone does not say it.
_ADVICE: Mapping[str, str] = {
    "CSBS.0001": "the number of backup policies reached its quota (CSBS 'service over "
    "limit'): delete unused backup policies or ask Huawei Cloud for a higher quota, "
    "then send the failed pairs again",
    "CSBS.9006": "a CSBS quota is exhausted: check `GET /quotas` and raise it or free some",
}

# APIG.0308: "The throttling threshold has been reached: policy user over ratelimit,
# limit:XX, time:1 second" (or "time:1 minute"). The prefix varies (APIG./APIGW.).
_WINDOW = re.compile(r"time\s*:\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?\b", re.IGNORECASE)
_WINDOW_UNITS: Mapping[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_MAX_WINDOW_S = 3600.0  # a longer "window" is not a rate limit worth waiting out in a retry


def throttle_window_s(code: str | None, msg: str | None) -> float | None:
    """The throttling window a gateway's ``APIG.0308`` answer names, in seconds, or None."""
    if not code or not msg or not code.endswith(".0308"):
        return None
    found = _WINDOW.search(msg)
    if found is None:
        return None
    seconds = float(found.group(1)) * _WINDOW_UNITS[found.group(2).lower()]
    return seconds if 0 < seconds <= _MAX_WINDOW_S else None


_ALREADY_REPLICATED_MSG = re.compile(
    r"(already|being)\s+(been\s+)?replicat|has been replicated", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ErrorTable:
    """Maps (HTTP status, error code, message) to a :class:`Classification`.

    One table for the whole tool; ``extra_codes`` comes from configuration so that an
    unconfirmed code can be reclassified without a release.
    """

    codes: Mapping[str, Classification] = field(default_factory=lambda: dict(_DEFAULT_CODES))

    @classmethod
    def with_overrides(cls, extra: Mapping[str, str]) -> ErrorTable:
        merged = dict(_DEFAULT_CODES)
        for code, name in extra.items():
            try:
                merged[code] = Classification(name)
            except ValueError:
                choices = ", ".join(c.value for c in Classification)
                raise ConfigError(
                    f"error code {code!r}: unknown classification {name!r} (one of {choices})"
                ) from None
        return cls(merged)

    def advice(self, code: str | None) -> str | None:
        """What to do about ``code``, when the table knows more than the service says."""
        return _ADVICE.get(code) if code else None

    @property
    def already_replicated_codes(self) -> Iterable[str]:
        return [c for c, k in self.codes.items() if k is Classification.ALREADY_REPLICATED]

    def knows(self, code: str | None, msg: str | None) -> bool:
        """True when ``code`` (or, for want of it, ``msg``) is in the table: the answer's
        meaning is known, not inferred from its HTTP status."""
        if code is not None and code in self.codes:
            return True
        return bool(msg and _ALREADY_REPLICATED_MSG.search(msg))

    def classify(self, http_status: int, code: str | None, msg: str | None) -> Classification:
        if code is not None and code in self.codes:
            return self.codes[code]
        if http_status == 400 and msg and _ALREADY_REPLICATED_MSG.search(msg):
            return Classification.ALREADY_REPLICATED
        if http_status in _RETRYABLE_STATUS:
            return Classification.TRANSIENT
        if http_status in (401, 403):
            return Classification.AUTH
        return Classification.PERMANENT
