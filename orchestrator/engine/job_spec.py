"""What a job is given and what it gives back: :class:`JobSpec`, :class:`JobResult` and the
exit code of a finished run (the pool's settings are projected from the run's by
:meth:`PoolSettings.from_settings <orchestrator.engine.pool_types.PoolSettings.from_settings>`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import RunSettings
from orchestrator.engine.live import Watcher
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.plan import Plan
from orchestrator.engine.pool import Pool
from orchestrator.engine.pool_types import PoolStats
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.format import StopReason
from orchestrator.models import ReplicationTask, ResultStatus

__all__ = [
    "SNAPSHOT_AFTER_BYTES",
    "SNAPSHOT_CHECK_S",
    "JobResult",
    "JobSpec",
    "exit_code_for",
]

#: A run saves the ledger's fold (``<ledger>.snapshot``) when this much of the ledger lies past
#: the last snapshot: folding less than that at the next start takes well under a second,
#: less than re-reading the run's lines to save it would add to this run.
SNAPSHOT_AFTER_BYTES = 64 << 20
#: How often a running job looks whether the ledger grew that much (a stat, nothing more).
SNAPSHOT_CHECK_S = 10.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    ledger: Path
    settings: RunSettings
    manifest: Path | None = None
    tasks: Sequence[ReplicationTask] | None = None  # discovered work, instead of a manifest
    #: Where the pairs came from, for the ledger: None means "manifest" when there is one.
    #: ``run --discover`` saves what it found as a manifest (for resume) and says "discover".
    source: str | None = None
    strict: bool = False
    retry_failed: bool = False
    #: ``resume``: the SHA-256 the resumed run recorded for its manifest; a manifest whose
    #: bytes differ is refused before anything is sent (None: no check, ``--replan``).
    expect_manifest_sha256: str | None = None
    #: One capabilities GET before anything is recorded or sent (see service.preflight).
    preflight: bool = True
    #: A manifest without rows is a usage error (exit 2) unless this is set.
    allow_empty: bool = False
    handle_signals: bool = True
    # Handed the pool before it runs, so that a caller watching signals itself (the
    # scheduler) can stop it gracefully; used with handle_signals=False.
    on_pool: Callable[[Pool], None] | None = None
    #: Runs beside the pool (the live ``--metrics-file``), cancelled when the pool returns.
    watch: Watcher | None = None
    #: The look-ups' pace of the command this job is a step of (``run --discover``, a
    #: schedule's firing): the run starts at what it learned, and it learns what the run
    #: measured. None: the job's own, from the settings and the ``--state-file``.
    pacing: Pacing | None = None
    #: Asked about the plan once the preflight has proved the credentials, before anything
    #: is recorded or sent; raises to refuse the run (the CLI's CBR destination-vault check).
    vet_plan: Callable[[Plan], Awaitable[None]] | None = None
    snapshot_after_bytes: int = SNAPSHOT_AFTER_BYTES
    snapshot_check_s: float = SNAPSHOT_CHECK_S
    #: The ``[connection.endpoints]`` the operator configured, checked against the regions
    #: the manifest names (engine/endpoint_keys.py). None: the table of the settings the spec
    #: is made with, kept when a caller swaps in the connection's (--simulate's own table).
    configured_endpoints: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.configured_endpoints is None:
            endpoints = dict(self.settings.connection.endpoints)
            object.__setattr__(self, "configured_endpoints", endpoints)


@dataclass(slots=True)
class JobResult:
    run_id: str
    exit_code: ExitCode
    stats: PoolStats
    plan: Plan
    duration_s: float
    rejected: int
    conflicts: int


def exit_code_for(stats: PoolStats, rejected: int) -> ExitCode:
    """The documented exit code of a finished run (most severe first)."""
    by_reason = {
        StopReason.AUTH: ExitCode.AUTH,
        StopReason.UNREACHABLE: ExitCode.GAVE_UP,
        StopReason.THRESHOLD: ExitCode.THRESHOLD,
        StopReason.SIGNAL: ExitCode.INTERRUPTED,
        StopReason.DEADLINE: ExitCode.INTERRUPTED,
        StopReason.MANIFEST_CHANGED: ExitCode.INTERRUPTED,
    }
    if stats.stop_reason in by_reason:
        return by_reason[stats.stop_reason]
    if stats.counts[ResultStatus.GAVE_UP]:
        return ExitCode.GAVE_UP
    if stats.counts[ResultStatus.FAILED] or rejected:
        return ExitCode.FAILED
    return ExitCode.OK
