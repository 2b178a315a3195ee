"""One replication job end to end: ledger -> history -> plan -> pool -> summary.

What a job is given and returns is :mod:`~orchestrator.engine.job_spec`; its bookkeeping in
the ledger beside the run (snapshots, first attempts, rejected rows) is
:mod:`~orchestrator.engine.job_ledger`.

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
from collections.abc import Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    closing,
    contextmanager,
    nullcontext,
)
from pathlib import Path

import anyio
import structlog

from orchestrator import __version__
from orchestrator.engine.endpoint_keys import warn_unused_endpoints
from orchestrator.engine.job_ledger import (
    first_attempts_of,
    keep_snapshot,
    manifest_pin_fields,
    plan_history,
    record_rejections,
    snapshots_meanwhile,
)
from orchestrator.engine.job_spec import (
    JobResult,
    JobSpec,
    exit_code_for,
)
from orchestrator.engine.live import RunSnapshot
from orchestrator.engine.overload import load_learned_limits, save_learned_limits
from orchestrator.engine.pace_state import save_learned_rates
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.plan import Plan, require_rows
from orchestrator.engine.pool import Pool
from orchestrator.engine.pool_types import PoolSettings, PoolStats, Replicator
from orchestrator.engine.progress import NullProgress, Progress, run_ticks
from orchestrator.errors import ConfigError, ManifestChangedError, ManifestError
from orchestrator.ledger.file import LedgerWriter
from orchestrator.ledger.format import UNKNOWN, StopReason
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.ledger.run_lines import RunFinished, RunStarted
from orchestrator.models import WorkItem
from orchestrator.service.preflight import HasCapabilities, patience, preflight

__all__ = ["refuse_same_file", "run_job"]

log = structlog.get_logger("orchestrator.engine.job")

ClientFactory = Callable[[], AbstractAsyncContextManager[Replicator]]


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


def build_plan(spec: JobSpec, history: History) -> Plan:
    if spec.tasks is not None:
        return Plan.from_tasks(spec.tasks, history=history, retry_failed=spec.retry_failed)
    assert spec.manifest is not None  # noqa: S101 - the CLI guarantees one source
    plan = Plan.from_manifest(
        spec.manifest,
        default_project_id=spec.settings.connection.project_id,
        history=history,
        retry_failed=spec.retry_failed,
        service=spec.settings.connection.service,
    )
    warn_unused_endpoints(spec, plan)
    return plan


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
        history = await anyio.to_thread.run_sync(plan_history, spec.ledger)
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
        # The look-ups' pace (the preflight's): the pool starts at what it knows.
        pacing = spec.pacing or Pacing.from_settings(spec.settings)
        if spec.preflight:
            client_factory = await _preflighted(spec, plan, client_factory, clients, pacing)
        if spec.vet_plan is not None and plan.totals.to_send:
            await spec.vet_plan(plan)
        recorder = LedgerRecorder(ledger, run_id, cbr=spec.settings.connection.service == "cbr")
        await recorder.run_started(
            RunStarted(
                manifest=str(spec.manifest.resolve()) if spec.manifest else None,
                pin=manifest_pin_fields(plan),
                source=spec.source or ("manifest" if spec.manifest else "discover"),
                settings=spec.settings.public(),
                version=__version__,
                retry_failed=spec.retry_failed,
            )
        )
        rejected = record_rejections(recorder, plan, spec) + plan.rejected_dropped
        if rejected:
            log.warning(
                "manifest.rows_rejected",
                rows=rejected,
                first=plan.problems(),
                hint="the valid rows are sent; `report` lists every rejected row",
            )
        shown.start({region: c.to_send for region, c in plan.by_region.items() if c.to_send})
        limits = load_learned_limits(spec.settings.limits.state_file)
        rates = pacing.known()
        async with client_factory() as client:
            first_attempts = (
                await anyio.to_thread.run_sync(first_attempts_of, spec.ledger)
                if plan.totals.unknown_outcome
                else {}
            )
            pool = Pool(
                client,
                recorder,
                PoolSettings.from_settings(spec.settings, limits, rates),
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
                RunFinished(
                    counts=finished_counts(stats),
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
            )
        # Still under the ledger's lock: no other run appends while its lines are folded.
        await keep_snapshot(spec, history)
    save_learned_limits(spec.settings.limits.state_file, stats.limits)
    measured = {key: p["limit"] for key, p in stats.pace.items()}
    save_learned_rates(spec.settings.limits.state_file, measured)
    pacing.adopt(measured)  # the command's next step (track, coverage) starts there
    return JobResult(run_id, code, stats, plan, duration, rejected, len(plan.conflicts))


def finished_counts(stats: PoolStats) -> dict[str, int]:
    """``run_finished``'s counts: pairs by result status, and the pairs in flight at the stop
    as ``unknown`` (``report``'s word; absent when none), so that they add up as it counts."""
    counts = {str(status): n for status, n in stats.counts.items()}
    if stats.unknown:
        counts[UNKNOWN] = stats.unknown
    return counts


async def _preflighted(
    spec: JobSpec,
    plan: Plan,
    client_factory: ClientFactory,
    stack: AsyncExitStack,
    pacing: Pacing,
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
            pacing.capabilities_of(client),
            first.task.project_id,
            region=first.task.source_region,
            give_up_after=patience(spec.settings),
        )
    return lambda: nullcontext(client)


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
        tg.start_soon(snapshots_meanwhile, spec, history)
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
