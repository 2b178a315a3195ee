"""What a job is given and what it gives back: :class:`JobSpec`, :class:`JobResult`, the
pool's settings projected from the run's settings, and the exit code of a finished run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import RunSettings
from orchestrator.engine.live import Watcher
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.plan import Plan
from orchestrator.engine.pool import Pool, PoolSettings, PoolStats
from orchestrator.engine.retry import RetryPolicy
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.format import StopReason
from orchestrator.models import ReplicationTask, ResultStatus

__all__ = [
    "SNAPSHOT_AFTER_BYTES",
    "SNAPSHOT_CHECK_S",
    "JobResult",
    "JobSpec",
    "exit_code_for",
    "pool_settings",
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
    #: Asked about the plan once the preflight has proved the credentials, before anything
    #: is recorded or sent; raises to refuse the run (the CLI's CBR destination-vault check).
    vet_plan: Callable[[Plan], Awaitable[None]] | None = None
    snapshot_after_bytes: int = SNAPSHOT_AFTER_BYTES
    snapshot_check_s: float = SNAPSHOT_CHECK_S


@dataclass(slots=True)
class JobResult:
    run_id: str
    exit_code: ExitCode
    stats: PoolStats
    plan: Plan
    duration_s: float
    rejected: int
    conflicts: int


def pool_settings(
    settings: RunSettings,
    initial_limits: Mapping[str, int],
    initial_rates: Mapping[str, float] | None = None,
) -> PoolSettings:
    return PoolSettings(
        concurrency=settings.concurrency,
        per_region=settings.per_region,
        per_region_floor=settings.per_region_floor,
        adaptive=settings.adaptive,
        rate=settings.rate,
        retry=RetryPolicy.from_settings(settings),
        retry_budget_percent=settings.retry_budget,
        failure_min_results=settings.failure_min_results,
        failure_percent=settings.failure_percent,
        grace_period=settings.grace_period,
        max_duration=settings.max_duration,
        initial_limits=initial_limits,
        reconcile_skew_s=settings.reconcile_skew,
        # --rate is the ceiling; under it the pace is learned from the service's answers.
        pace=PaceSettings(ceiling=settings.rate) if settings.pace else None,
        initial_rates=initial_rates or {},
        # A pair gives up after the retry time anyway; a service never reached, sooner.
        unreachable_after_s=(
            min(settings.unreachable_after, settings.retry_time)
            if settings.unreachable_after > 0
            else None
        ),
    )


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
