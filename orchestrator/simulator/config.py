"""Every knob of the simulator, as two frozen records.

:class:`SimulatorConfig` is fixed for the life of one simulator (estate, credentials, auth,
copy timing). :class:`FaultConfig` is the part that may change while it runs
(``POST /_sim/faults``): latency, error shares, throttling, capacity, copy failure rate.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from orchestrator.errors import ConfigError

__all__ = [
    "DEFAULT_CAPABILITIES",
    "AuthMode",
    "CapacityScope",
    "FaultConfig",
    "FaultScope",
    "SimulatorConfig",
]

AuthMode = Literal["any", "token", "aksk", "none"]
#: The metadata service's session tokens (``PUT /meta-data/latest/api/token``): served but
#: not needed, needed for ``GET /openstack/latest/securitykey``, or not served at all (404).
MetadataTokens = Literal["optional", "required", "off"]
FaultScope = Literal["replicate", "all"]
CapacityScope = Literal["region", "global"]

#: Which destinations each source region may replicate to (the capability list).
DEFAULT_CAPABILITIES: Mapping[str, tuple[str, ...]] = {
    "cn-north-1": ("cn-east-2", "cn-south-1", "cn-east-3"),
    "cn-north-4": ("cn-east-3", "cn-south-1", "cn-north-1"),
    "cn-east-3": ("cn-north-4", "cn-south-1", "cn-east-2"),
    "cn-east-2": ("cn-north-1", "cn-south-1"),
    "cn-south-1": ("cn-north-4", "cn-east-3"),
}

_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_PROBABILITIES = (
    "p503",
    "p500",
    "p_malformed",
    "p_drop",
    "p_apply_drop",
    "copy_fail_rate",
    "copy_skip_rate",
)


def _check_number(name: str, value: object) -> None:
    """A knob read from a TOML file may be any type: say so instead of failing to compare."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")


def _check_probability(name: str, value: float) -> None:
    _check_number(name, value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    _check_number(name, value)
    if not value >= 0:  # also rejects NaN
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Misbehaviour knobs; each share is a probability drawn from a seeded RNG per request.

    ``faults_on`` limits latency, throttling and injected errors/drops to the replicate call
    ("replicate", the default, so that reconcile GETs can be tested) or to every CSBS path.
    """

    faults_on: FaultScope = "replicate"
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    p503: float = 0.0
    p500: float = 0.0
    p_malformed: float = 0.0
    p_drop: float = 0.0
    p_apply_drop: float = 0.0
    throttle_rate: float = 0.0
    """Requests per second per project before 429 APIG.0308; 0 turns throttling off."""
    throttle_burst: int = 0
    """Token bucket size; 0 means ``max(1, ceil(throttle_rate))``."""
    retry_after_s: float | None = None
    """Send ``Retry-After`` (whole seconds, rounded up) with 429s and 503s; None sends none."""
    max_in_flight: int = 0
    """Replications in ``waiting_replicate``/``replicating`` above which replicate answers 503;
    0 = no limit."""
    capacity_scope: CapacityScope = "region"
    """Count ``max_in_flight`` per destination region, or across the whole estate."""
    copy_fail_rate: float = 0.0
    """Share of accepted replications whose copy ends in ``fail``."""
    copy_skip_rate: float = 0.0
    """Share of accepted replications the service skips (record status ``skip``)."""

    def __post_init__(self) -> None:
        if self.faults_on not in get_args(FaultScope):
            raise ConfigError(f"faults_on must be one of {get_args(FaultScope)}")
        if self.capacity_scope not in get_args(CapacityScope):
            raise ConfigError(f"capacity_scope must be one of {get_args(CapacityScope)}")
        for name in _PROBABILITIES:
            _check_probability(name, getattr(self, name))
        shares = self.p503 + self.p500 + self.p_malformed + self.p_drop + self.p_apply_drop
        if shares > 1.0 + 1e-9:
            raise ConfigError(f"p503+p500+p_malformed+p_drop+p_apply_drop is {shares} > 1")
        if self.copy_fail_rate + self.copy_skip_rate > 1.0 + 1e-9:
            raise ConfigError("copy_fail_rate + copy_skip_rate must be <= 1")
        for name in ("latency_s", "latency_jitter_s", "throttle_rate"):
            _check_non_negative(name, getattr(self, name))
        if self.throttle_burst < 0 or self.max_in_flight < 0:
            raise ConfigError("throttle_burst and max_in_flight must be >= 0")
        if self.retry_after_s is not None:
            _check_non_negative("retry_after_s", self.retry_after_s)

    @property
    def bucket_size(self) -> int:
        return self.throttle_burst or max(1, math.ceil(self.throttle_rate))

    def updated(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with ``changes`` applied (from JSON: ints are accepted for floats)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ConfigError(f"unknown fault knobs: {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            converted[name] = _coerce(name, known[name].type, value)
        return dataclasses.replace(self, **converted)


def _coerce(name: str, declared: object, value: Any) -> Any:
    """Check one JSON value against the declared field type (given as a string annotation)."""
    kind = str(declared)
    if value is None and "None" in kind:
        return None
    if kind.startswith(("float", "int")) and isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if kind.startswith("float") and isinstance(value, int | float):
        return float(value)
    if kind == "int" and isinstance(value, int):
        return value
    if not kind.startswith(("float", "int")) and isinstance(value, str):
        return value
    raise ConfigError(f"{name}: invalid value {value!r}")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything fixed for one simulator run. Secrets are kept out of ``repr``."""

    seed: int = 1
    items: int = 200
    """Checkpoint items generated at start, spread over the projects."""
    regions: tuple[str, ...] = ("cn-north-1", "cn-north-4", "cn-east-3")
    """Source regions of the estate; each gets ``projects_per_region`` projects."""
    projects_per_region: int = 1
    capabilities: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CAPABILITIES)
    )
    ak: str = "SIMULATORACCESSKEY01"
    sk: str = field(default="simulator-secret-key-not-for-production", repr=False)
    user: str = "sim-user"
    password: str = field(default="sim-password", repr=False)
    domain: str = "sim-domain"
    auth: AuthMode = "any"
    token_ttl_s: float = 86400.0
    """Token lifetime in *simulated* seconds (so ``/_sim/advance`` can expire tokens)."""
    temp_key_ttl_s: float = 86400.0
    """Lifetime, in simulated seconds, of the temporary AK/SK/security token the ECS metadata
    endpoint (``GET /openstack/latest/securitykey``) issues."""
    metadata_tokens: MetadataTokens = "optional"
    max_clock_skew_s: float = 900.0
    """AK/SK: reject an ``X-Sdk-Date`` further than this from the real wall clock."""
    lockout_failures: int = 5
    lockout_s: float = 300.0
    copy_wait_s: float = 5.0
    """Simulated seconds a replication stays ``waiting_replicate``."""
    copy_duration_s: float = 30.0
    """Simulated seconds a replication stays ``replicating`` before ``success`` or ``fail``."""
    time_scale: float = 1.0
    """Simulated seconds per real second for the default clock."""
    duplicate_code: str = "BackupService.1009"
    duplicate_status: int = 400
    duplicate_msg: str = (
        "The backup is being replicated or has been replicated to the destination region."
    )
    """CSBS documents no code nor wording for this refusal: all three are knobs."""
    records_endpoint: bool = True
    """Serve ``GET /v1/{project_id}/replication_records`` (unconfirmed on the real service);
    False: it answers 404 ``APIGW.0101`` like any unknown path."""
    age_days: int = 0
    """0: backups spread over 2024, one per resource. N > 0: an *aged* estate of
    ``items // N`` resources with one backup a day over the N days before the clock's now,
    whose copies are covered, stale, failing, running or missing (coverage, issue 18)."""
    replica_share: float = 0.0
    """Share of the backups that the CBR face shows as *replicas* copied into their region
    (``image_type`` ``replication``, as the real service marks them), picked by a hash of
    the backup id; 0 (the default) shows none. Discovery must never send them again."""
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        _check_probability("replica_share", self.replica_share)
        if not isinstance(self.age_days, int) or self.age_days < 0:
            raise ConfigError(f"age_days must be a whole number >= 0, got {self.age_days!r}")
        if self.items < 0 or self.projects_per_region < 1:
            raise ConfigError("items must be >= 0 and projects_per_region >= 1")
        if len(self.regions) < 1:
            raise ConfigError("at least one source region is needed")
        for region in self.regions:
            if not _REGION.match(region):
                raise ConfigError(f"invalid region name {region!r}")
            if region not in self.capabilities:
                raise ConfigError(f"region {region!r} has no replication capability entry")
        if self.metadata_tokens not in get_args(MetadataTokens):
            raise ConfigError(f"metadata_tokens must be one of {get_args(MetadataTokens)}")
        if self.auth not in get_args(AuthMode):
            raise ConfigError(f"auth must be one of {get_args(AuthMode)}")
        for name in (
            "token_ttl_s",
            "temp_key_ttl_s",
            "max_clock_skew_s",
            "lockout_s",
            "copy_wait_s",
        ):
            _check_non_negative(name, getattr(self, name))
        _check_non_negative("copy_duration_s", self.copy_duration_s)
        if not self.time_scale > 0:
            raise ConfigError("time_scale must be > 0")
        if not self.ak or not self.sk:
            raise ConfigError("ak and sk must not be empty")
        if not isinstance(self.records_endpoint, bool):
            raise ConfigError("records_endpoint must be true or false")

    @classmethod
    def from_knobs(cls, **knobs: Any) -> SimulatorConfig:
        """Build from one flat set of knobs; fault knobs go into :attr:`faults`."""
        fault_names = {f.name for f in dataclasses.fields(FaultConfig)}
        known = fault_names | {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(knobs) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown knob(s) {', '.join(map(repr, unknown))}{hint} "
                f"(valid: {', '.join(sorted(known - {'faults'}))})"
            )
        faults = {k: v for k, v in knobs.items() if k in fault_names}
        rest = {k: v for k, v in knobs.items() if k not in fault_names}
        base = rest.pop("faults", FaultConfig())
        return cls(**rest, faults=dataclasses.replace(base, **faults))
