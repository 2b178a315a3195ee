"""From parsed arguments to a running job: output, credentials, the client, the simulator.

The CLI parses; this module wires. It is the only place that reads the process environment
for credentials, decides where logs and progress go, and starts the embedded simulator for
``--simulate``. Everything it builds is handed down explicitly (no globals).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import anyio
from rich.console import Console

from orchestrator.auth import (
    AkSkSigner,
    Authenticator,
    IamPasswordToken,
    Secret,
    credentials_from_env,
)
from orchestrator.client import ClientSettings, CsbsClient, Timeouts
from orchestrator.engine.live import RunSnapshot, Watcher
from orchestrator.errors import ConfigError, ErrorTable
from orchestrator.exitcodes import ExitCode
from orchestrator.job import JobResult, JobSpec, run_job
from orchestrator.ledger import iter_records
from orchestrator.logs import close_logging, configure_logging
from orchestrator.metrics import RunMetrics, publish_live, write_textfile
from orchestrator.plan import Plan
from orchestrator.progress import NullProgress, Progress, make_progress
from orchestrator.report import build_report
from orchestrator.settings import RunSettings, load_config

__all__ = [
    "Connection",
    "connect",
    "launch_job",
    "live_watcher",
    "open_output",
    "print_summary",
    "secrets_of",
    "simulator_secrets",
    "write_run_metrics",
]

_SECRET_ENV = ("HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_AK", "CSBS_AUTH_TOKEN", "CSBS_IAM_PASSWORD")


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send requests and how to authenticate them, simulator included."""

    settings: RunSettings
    auth: Authenticator | None

    def client_settings(self) -> ClientSettings:
        s = self.settings
        return ClientSettings(
            endpoint=s.endpoint,
            region=s.region,
            timeouts=Timeouts(total_s=s.request_timeout),
            limit=max(256, s.concurrency * 2),
            verify_tls=s.verify_tls,
            error_table=ErrorTable.with_overrides(s.error_codes),
        )

    def client(self) -> CsbsClient:
        return CsbsClient(self.client_settings(), self.auth)


def secrets_of(
    settings: RunSettings, env: Mapping[str, str], extra: Iterable[str] = ()
) -> list[str]:
    """Every secret value this process knows, for the log redactor."""
    values = [env.get(name, "") for name in _SECRET_ENV]
    values += [settings.iam_password or "", *extra]
    return [v for v in values if v]


def authenticator(settings: RunSettings, env: Mapping[str, str]) -> Authenticator:
    """AK/SK or a token from the environment, else IAM user/password from the settings."""
    from_env = credentials_from_env(env)
    if from_env is not None:
        return from_env
    if settings.iam_user and settings.iam_password:
        if not settings.iam_domain:
            raise ConfigError("IAM token auth needs the account's domain: set [auth] domain")
        iam = settings.iam_endpoint or _iam_endpoint(settings.region)
        return IamPasswordToken(
            iam, settings.iam_user, Secret(settings.iam_password), settings.iam_domain
        )
    raise ConfigError(
        "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or CSBS_AUTH_TOKEN, "
        "or an IAM user in [auth] with CSBS_IAM_PASSWORD; or try --simulate"
    )


def _iam_endpoint(region: str | None) -> str:
    if not region:
        raise ConfigError("IAM token auth needs --iam-endpoint or a --region to derive it from")
    return f"https://iam.{region}.myhuaweicloud.com"


def simulator_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """``[simulator]`` knobs of the config file, with ``--sim-seed`` on top."""
    knobs = dict(load_config(args.config).get("simulator", {}))
    knobs["seed"] = args.sim_seed
    return knobs


@asynccontextmanager
async def connect(
    args: argparse.Namespace, settings: RunSettings, env: Mapping[str, str]
) -> AsyncIterator[Connection]:
    """The real service, or with ``--simulate`` an embedded simulator for the block's life."""
    if not getattr(args, "simulate", False):
        yield Connection(settings, authenticator(settings, env))
        return
    from orchestrator.simulator import Simulator, SimulatorConfig  # noqa: PLC0415 - only for --simulate

    try:
        config = SimulatorConfig.from_knobs(**simulator_knobs(args))
    except TypeError as exc:
        raise ConfigError(f"{args.config}: [simulator]: {exc}") from None
    async with Simulator(config) as sim:
        simulated = replace(
            settings,
            endpoint=sim.base_url,
            project_id=settings.project_id or sim.state.projects[0].id,
        )
        yield Connection(simulated, AkSkSigner(config.ak, Secret(config.sk)))


@dataclass(frozen=True, slots=True)
class Output:
    console: Console
    live: bool  # a terminal that shows rich output (logs through the console, live progress)

    def progress(self, wanted: bool) -> Progress:
        if not wanted:
            return NullProgress()
        return make_progress(self.live, console=self.console if self.live else None)


def open_output(args: argparse.Namespace, secrets: Iterable[str]) -> Output:
    """Configure logging so that logs and the progress display never share a stream badly."""
    console = Console(stderr=True)
    # is_interactive: a terminal that can redraw (not TERM=dumb); a dumb one gets log events.
    live = console.is_interactive and args.log_format != "json"
    configure_logging(
        fmt=args.log_format,
        level=args.log_level,
        log_file=args.log_file,
        secrets=secrets,
        console=console if live else None,
    )
    return Output(console, live)


def launch_job(args: argparse.Namespace, settings: RunSettings, *, manifest: Path) -> int:
    """``run`` and ``resume``: the whole job, then a summary on stdout."""
    env = os.environ
    extra = simulator_secrets(args)
    output = open_output(args, secrets_of(settings, env, extra))
    try:
        if args.dry_run:
            from orchestrator.planning import launch_plan  # noqa: PLC0415 - it imports us

            return launch_plan(args, settings, manifest=manifest, as_json=args.json)
        spec = JobSpec(
            ledger=Path(args.ledger),
            settings=settings,
            manifest=manifest,
            strict=args.strict,
            retry_failed=args.retry_failed,
            watch=live_watcher(settings),
        )
        progress = output.progress(not args.no_progress)
        result = anyio.run(_job, args, spec, env, progress)
        write_run_metrics(result, spec)
        print_summary(result, spec.ledger, sys.stdout)
        return result.exit_code
    finally:
        close_logging()


def simulator_secrets(args: argparse.Namespace) -> list[str]:
    """The simulator's own credentials (with ``--simulate``), for the log redactor."""
    if not getattr(args, "simulate", False):
        return []
    from orchestrator.simulator import SimulatorConfig  # noqa: PLC0415 - only for --simulate

    config = SimulatorConfig.from_knobs(**simulator_knobs(args))
    return [config.sk, config.password]


async def _job(
    args: argparse.Namespace, spec: JobSpec, env: Mapping[str, str], progress: Progress
) -> JobResult:
    async with connect(args, spec.settings, env) as conn:
        factory: Callable[[], AbstractAsyncContextManager[CsbsClient]] = conn.client
        return await run_job(replace(spec, settings=conn.settings), factory, progress=progress)


def live_watcher(settings: RunSettings) -> Watcher | None:
    """Rewrites ``--metrics-file`` every 30 s while the run goes on; None without one."""
    path = settings.metrics_file
    if path is None:
        return None

    async def watch(snapshot: Callable[[], RunSnapshot]) -> None:
        await publish_live(path, snapshot)

    return watch


def write_run_metrics(result: JobResult, spec: JobSpec) -> None:
    """The Prometheus textfile of the run, when ``metrics_file`` is set."""
    path = spec.settings.metrics_file
    if path is None:
        return
    report = build_report(iter_records(spec.ledger), run=result.run_id)
    metrics = RunMetrics.from_report(report, finished_at=time.time())
    write_textfile(path, replace(metrics, pace=result.stats.pace))


_VERDICT = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "done, with permanent failures (see `report`)",
    ExitCode.GAVE_UP: "done, some pairs gave up on transient errors: run `resume` later",
    ExitCode.THRESHOLD: "stopped: too many permanent failures (failure threshold)",
    ExitCode.INTERRUPTED: "interrupted: run `resume` to finish",
    ExitCode.AUTH: "stopped: the service refused the credentials",
}


def _verdict(result: JobResult) -> str:
    if result.stats.stop_reason == "unreachable":
        return "stopped: no request could connect to the service"
    return _VERDICT.get(result.exit_code, "finished")


def _problem_lines(plan: Plan) -> list[str]:
    """The manifest's invalid rows and conflicts, the first few: what to fix, where."""
    total = plan.problem_count
    if not total:
        return []
    shown = plan.problems()
    which = "" if total == len(shown) else f" (the first {len(shown)} of {total})"
    lines = [f"manifest rows not sent{which}; `report` lists every rejected row:"]
    return lines + [f"  {problem}" for problem in shown]


def pace_lines(pace: Mapping[str, Mapping[str, float | int | None]]) -> list[str]:
    """One line per endpoint/project the service throttled: what rate it allowed."""
    lines = []
    for key, p in sorted(pace.items()):
        if p.get("limit") is None:
            continue
        lines.append(
            f"pace {key}: the service allowed {p['limit']:.1f} requests/s "
            f"({p['throttled']} of {int(p['accepted'] or 0) + int(p['throttled'] or 0)} "
            "requests throttled)"
        )
    return lines


def print_summary(result: JobResult, ledger: Path, out: TextIO) -> None:
    counts = result.stats.counts
    parts = [f"{status} {n}" for status, n in sorted(counts.items()) if n]
    if result.rejected:
        parts.append(f"rejected {result.rejected}")
    totals = result.plan.totals
    if totals.already_done:
        parts.append(f"already done earlier {totals.already_done}")
    if totals.duplicates:
        parts.append(f"duplicate rows {totals.duplicates}")
    lines = [
        f"{_verdict(result)}: " + (", ".join(parts) or "nothing to do"),
        f"{result.stats.requests} requests, {result.stats.retries} retries, "
        f"{result.duration_s:.1f}s; ledger {ledger} (run {result.run_id})",
    ]
    lines += pace_lines(result.stats.pace)
    if result.stats.auth_error:
        lines.append(f"credentials: {result.stats.auth_error}")
    if result.stats.unreachable:
        lines.append(
            f"last error: {result.stats.unreachable}; check --endpoint (or --region) and "
            "the network, then `resume`"
        )
    lines += _problem_lines(result.plan)
    out.write("\n".join(lines) + "\n")
    out.flush()
