"""One replication job end to end: ledger -> history -> plan -> pool -> summary.

Used by ``run``, ``resume`` and the scheduler. It owns the order of things that matter for
safety: the ledger is locked (and a torn tail repaired) before the history is read; the whole
manifest is validated and deduplicated before the first request; ``run_finished`` and the final
flush happen even when the run is cancelled.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    closing,
    contextmanager,
    nullcontext,
)
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from orchestrator import __version__
from orchestrator.config.settings import RunSettings
from orchestrator.engine.live import RunSnapshot, Watcher
from orchestrator.engine.overload import load_learned_limits, save_learned_limits
from orchestrator.engine.pace import PaceSettings
from orchestrator.engine.pace_state import load_learned_rates, save_learned_rates
from orchestrator.engine.plan import Plan, require_rows
from orchestrator.engine.pool import Pool, PoolSettings, PoolStats, Replicator
from orchestrator.engine.progress import NullProgress, Progress, run_ticks
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import ConfigError, LedgerError, ManifestChangedError, ManifestError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter, iter_records
from orchestrator.ledger.format import StopReason
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.models import PairKey, ReplicationTask, ResultStatus, WorkItem
from orchestrator.service.preflight import HasCapabilities, patience, preflight

__all__ = [
    "JobResult",
    "JobSpec",
    "exit_code_for",
    "pool_settings",
    "refuse_same_file",
    "run_job",
]

log = structlog.get_logger("orchestrator.engine.job")

ClientFactory = Callable[[], AbstractAsyncContextManager[Replicator]]

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


def refuse_same_file(manifest: Path, ledger: Path) -> None:
    """A manifest given as the ledger (or the other way round) would be read as the other
    and written into: refuse it before anything is opened for writing."""
    same = manifest.resolve() == ledger.resolve()
    if not same and manifest.exists() and ledger.exists():
        same = os.path.samefile(manifest, ledger)
    if same:
        raise ConfigError(
            f"--manifest and --ledger are the same file ({manifest}): the ledger is where the "
            "run writes its results; give it its own file"
        )


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


def _plan_history(ledger: Path) -> History:
    """The ledger folded for planning: statuses only, no record ids."""
    return History.load(ledger, record_ids=False)


async def _keep_snapshot(spec: JobSpec, history: History) -> float | None:
    """Fold this run's lines into the history and save it, when the ledger has grown enough
    since the last snapshot; returns the seconds that took (0 when not needed). A snapshot
    is a cache: failing to write one is only logged (and returns None). Logged here, on the
    event loop, not from the worker thread."""
    started = time.monotonic()
    try:
        size = await anyio.to_thread.run_sync(_save_if_grown, spec, history)
    except (OSError, LedgerError) as exc:
        log.warning("history.snapshot_not_saved", ledger=str(spec.ledger), error=str(exc))
        return None
    if not size:
        return 0.0
    took = time.monotonic() - started
    log.info(
        "history.snapshot_saved",
        ledger=str(spec.ledger),
        covers_bytes=history.ledger_end,
        pairs=len(history),
        bytes=size,
        seconds=round(took, 3),
    )
    return took


def _save_if_grown(spec: JobSpec, history: History) -> int:
    """The snapshot's size, or 0 when the ledger has not grown enough to save one."""
    if os.stat(spec.ledger).st_size - history.snapshot_end < spec.snapshot_after_bytes:
        return 0
    history.catch_up(spec.ledger)
    return history.save_snapshot(spec.ledger)


def build_plan(spec: JobSpec, history: History) -> Plan:
    if spec.tasks is not None:
        return Plan.from_tasks(spec.tasks, history=history, retry_failed=spec.retry_failed)
    assert spec.manifest is not None  # noqa: S101 - the CLI guarantees one source
    return Plan.from_manifest(
        spec.manifest,
        default_project_id=spec.settings.project_id,
        history=history,
        retry_failed=spec.retry_failed,
        service=spec.settings.service,
    )


async def run_job(
    spec: JobSpec, client_factory: ClientFactory, *, progress: Progress | None = None
) -> JobResult:
    """Run one job against the service; the ledger holds every outcome when this returns.

    Raises :class:`ManifestError` before anything is sent or recorded when ``spec.strict``
    and a manifest row is invalid or conflicting.
    """
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    shown = progress or NullProgress()
    if spec.manifest is not None:
        refuse_same_file(spec.manifest, spec.ledger)
    async with LedgerWriter(spec.ledger) as ledger, AsyncExitStack() as clients:
        if ledger.repaired_bytes:
            log.warning("ledger.repaired", path=str(spec.ledger), cut_bytes=ledger.repaired_bytes)
        history = await anyio.to_thread.run_sync(_plan_history, spec.ledger)
        log.debug(
            "history.loaded",
            pairs=len(history),
            lines=history.ledger_lines,
            from_snapshot=history.snapshot_end,
            snapshot=history.snapshot_note,
        )
        plan = await anyio.to_thread.run_sync(build_plan, spec, history)
        _refuse_if_changed(plan, spec)
        if spec.tasks is None and spec.source != "discover" and not spec.allow_empty:
            require_rows(plan, str(spec.manifest))
        if spec.strict:
            _refuse_if_invalid(plan, spec)
        if spec.preflight:
            client_factory = await _preflighted(spec, plan, client_factory, clients)
        recorder = LedgerRecorder(ledger, run_id, cbr=spec.settings.service == "cbr")
        await recorder.run_started(
            manifest=str(spec.manifest.resolve()) if spec.manifest else None,
            **_manifest_pin_fields(plan),
            source=spec.source or ("manifest" if spec.manifest else "discover"),
            settings=spec.settings.public(),
            version=__version__,
            retry_failed=spec.retry_failed,
        )
        rejected = _record_rejections(recorder, plan, spec) + plan.rejected_dropped
        if rejected:
            log.warning(
                "manifest.rows_rejected",
                rows=rejected,
                first=plan.problems(),
                hint="the valid rows are sent; `report` lists every rejected row",
            )
        shown.start({region: c.to_send for region, c in plan.by_region.items() if c.to_send})
        limits = load_learned_limits(spec.settings.state_file)
        rates = load_learned_rates(spec.settings.state_file)
        async with client_factory() as client:
            first_attempts = (
                await anyio.to_thread.run_sync(first_attempts_of, spec.ledger)
                if plan.totals.unknown_outcome
                else {}
            )
            pool = Pool(
                client,
                recorder,
                pool_settings(spec.settings, limits, rates),
                progress=shown,
                first_attempts=first_attempts,
            )
            if spec.on_pool is not None:
                spec.on_pool(pool)
            try:
                with _collector_tuned():
                    stats = await _run_pool(pool, plan, spec, shown, history)
            finally:
                shown.close()
        code = exit_code_for(stats, rejected)
        duration = time.monotonic() - started
        with anyio.CancelScope(shield=True):
            await recorder.run_finished(
                counts={str(status): n for status, n in stats.counts.items()},
                rejected=rejected,
                duplicates=plan.totals.duplicates,
                conflicts=len(plan.conflicts),
                already_done=plan.totals.already_done,
                interrupted=stats.stop_reason is not None and stats.stop_reason.interrupted,
                reason=stats.stop_reason,
                duration_s=round(duration, 3),
                exit_code=int(code),
                requests=stats.requests,
                retries=stats.retries,
                pace=stats.pace,
            )
        # Still under the ledger's lock: no other run appends while its lines are folded.
        await _keep_snapshot(spec, history)
    save_learned_limits(spec.settings.state_file, stats.limits)
    save_learned_rates(spec.settings.state_file, {key: p["limit"] for key, p in stats.pace.items()})
    return JobResult(run_id, code, stats, plan, duration, rejected, len(plan.conflicts))


async def _preflighted(
    spec: JobSpec, plan: Plan, client_factory: ClientFactory, stack: AsyncExitStack
) -> ClientFactory:
    """Prove endpoint, credentials and project with one GET, for the first pair's project,
    before the run is recorded: a refusal leaves the ledger as it was and costs one request.
    The client opened for it serves the run (the factory returned hands it out)."""
    with closing(plan.work()) as work:
        first = next(work, None)
    if first is None:
        return client_factory
    client = await stack.enter_async_context(client_factory())
    if isinstance(client, HasCapabilities):
        await preflight(
            client,
            first.task.project_id,
            region=first.task.source_region,
            give_up_after=patience(spec.settings),
        )
    return lambda: nullcontext(client)


def first_attempts_of(ledger: Path) -> dict[PairKey, float]:
    """When each pair with an attempt and no result after it was first attempted since its
    last result (epoch seconds): reconcile tells a record made by that attempt from one that
    was there before. Read only when the plan reconciles pairs (after a kill, a few)."""
    since: dict[PairKey, float] = {}
    for record in iter_records(ledger):
        event = record.get("event")
        if event not in {"attempt", "result"}:
            continue
        key = (
            str(record.get("project_id")),
            str(record.get("checkpoint_item_id")),
            str(record.get("destination_region")),
        )
        if event == "result":
            since.pop(key, None)
        elif key not in since:
            try:
                since[key] = datetime.fromisoformat(str(record.get("ts"))).timestamp()
            except ValueError:
                continue
    return since


def _manifest_pin_fields(plan: Plan) -> dict[str, Any]:
    """What ``run_started`` records of the manifest's bytes, for ``resume`` to compare."""
    if plan.pin is None or not plan.pin.sealed:
        return {}
    return {"manifest_size": plan.pin.size, "manifest_sha256": plan.pin.sha256}


def _refuse_if_changed(plan: Plan, spec: JobSpec) -> None:
    expected = spec.expect_manifest_sha256
    if expected is None or plan.pin is None or plan.pin.sha256 == expected:
        return
    raise ManifestError(
        str(spec.manifest),
        None,
        None,
        f"its bytes changed since the run being resumed planned it (sha256 {expected[:16]}... "
        f"then, {plan.pin.sha256[:16]}... now); nothing sent. Restore it, or pass --replan "
        "to plan the file as it is now (pairs already done are still skipped)",
    )


def _refuse_if_invalid(plan: Plan, spec: JobSpec) -> None:
    total = plan.problem_count
    if total:
        problems = plan.problems()
        more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
        raise ManifestError(
            str(spec.manifest or "discover"),
            None,
            None,
            f"--strict: {total} invalid or conflicting rows, nothing sent: "
            + "; ".join(problems)
            + more,
        )


#: Net new container objects between two young-generation collections while a pool runs (the
#: interpreter's default is 700).
_GC_YOUNG_THRESHOLD = 10_000


@contextmanager
def _collector_tuned() -> Iterator[None]:
    """The cyclic garbage collector, tuned for a pool run; restored after it.

    Hundreds of workers keep thousands of young objects alive (coroutines, queued work
    items), so with the default threshold a young collection ran every dozen requests and
    the collector took a tenth of the run's CPU. Objects from before the run (the plan, the
    history index, imported modules) are frozen out of the full collections meanwhile.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def _run_pool(
    pool: Pool, plan: Plan, spec: JobSpec, progress: Progress, history: History
) -> PoolStats:
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_ticks, progress)
        tg.start_soon(_snapshots_meanwhile, spec, history)
        if spec.handle_signals:
            tg.start_soon(_watch_signals, pool)
        if spec.watch is not None:
            total = plan.totals.to_send
            tg.start_soon(spec.watch, lambda: _snapshot(pool, total))
        stats = await pool.run(_pinned_work(plan, pool), plan.regions)
        tg.cancel_scope.cancel()
    return stats


def _pinned_work(plan: Plan, pool: Pool) -> Iterator[WorkItem]:
    """The plan's work; a manifest that changes under the run stops it like a signal does
    (nothing more is fed, pairs in flight finish, ``run_finished`` is written)."""
    try:
        yield from plan.work()
    except ManifestChangedError as exc:
        log.error(  # noqa: TRY400 - an operator's mistake, not a bug: no traceback
            "manifest.changed",
            error=str(exc),
            hint="restore it and `resume`, or `resume --replan` to plan the file as it is now",
        )
        pool.request_stop(StopReason.MANIFEST_CHANGED)


def _snapshot(pool: Pool, total: int) -> RunSnapshot:
    stats = pool.stats
    return RunSnapshot(
        counts={str(status): n for status, n in stats.counts.items()},
        total=total,
        requests=stats.requests,
        retries=stats.retries,
        pace=pool.pace_summary(),
    )


#: A running job spends at most about 1/_SNAPSHOT_DUTY of its time saving snapshots: a save
#: costs in proportion to the pairs, so a ledger of millions of pairs is saved less often.
_SNAPSHOT_DUTY = 50


async def _snapshots_meanwhile(
    spec: JobSpec,
    history: History,
    keep: Callable[[JobSpec, History], Awaitable[float | None]] = _keep_snapshot,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Save snapshots while the pool runs, so that a run killed outright (SIGKILL, OOM, a lost
    node) leaves about ``snapshot_after_bytes`` of ledger to fold, not all of its lines.

    The plan was built before the pool started and nothing else reads the history until
    the pool ends, so the worker thread may fold into it; cancelling this task waits for a
    save in progress to finish (it is not abandoned). After a failed save only the end of
    the run tries again (one warning, not one per check)."""
    took: float | None = 0.0
    while took is not None:
        await sleep(max(spec.snapshot_check_s, _SNAPSHOT_DUTY * took))
        took = await keep(spec, history)


async def _watch_signals(pool: Pool) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if pool.stopping:
                log.warning("run.cancelled", signal=name)
                pool.cancel()
                return
            log.warning("run.signal", signal=name, action="finishing in-flight requests")
            pool.request_stop(StopReason.SIGNAL)


def _record_rejections(recorder: LedgerRecorder, plan: Plan, spec: JobSpec) -> int:
    manifest = str(spec.manifest) if spec.manifest else "discover"
    count = 0
    for row in plan.rejected:
        recorder.rejected(
            manifest=manifest, line=row.line, field=row.field, reason=row.reason, ids=_row_ids(row)
        )
        count += 1
    for conflict in plan.conflicts:
        project_id, item_id, region = conflict.key
        for line, dest in zip(conflict.lines, conflict.destination_project_ids, strict=False):
            recorder.rejected(
                manifest=manifest,
                line=line,
                field="destination_project_id",
                reason="conflict: this pair is listed with different destination projects "
                f"(lines {', '.join(map(str, conflict.lines))}); none was sent",
                ids={
                    "checkpoint_item_id": item_id,
                    "project_id": project_id,
                    "destination_region": region,
                    "destination_project_id": dest,
                },
            )
            count += 1
    return count


def _row_ids(row: Any) -> dict[str, str | None]:
    # A CBR row's backup id travels as checkpoint_item_id; the recorder names it backup_id.
    names: Iterable[str] = (
        "checkpoint_item_id",
        "project_id",
        "destination_region",
        "destination_project_id",
    )
    return {name: getattr(row, name, None) for name in names}
