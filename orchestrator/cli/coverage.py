"""``coverage`` wired: list the estate, fold it with the ledgers, judge, render, exit 0 or 3.

:mod:`orchestrator.insight.coverage` is the pure fold; this module joins it to a connection
(the real service or ``--simulate``), the discovery rules and listing of
:mod:`orchestrator.discovery`, the ledgers, and the output. ``schedule --coverage`` calls
:func:`measure` at the end of each firing.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import structlog
from rich.console import Console

from orchestrator.atomic_file import replace_file
from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.cli.launch import open_output
from orchestrator.cli.logs import close_logging
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.listing import list_source
from orchestrator.discovery.pairs import destinations_for
from orchestrator.discovery.rules import Destination, DiscoverConfig, Rule, Source, parse_since
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.coverage import Coverage, CoverageFold
from orchestrator.insight.coverage_input import LedgerFact, ledger_facts, observe
from orchestrator.insight.coverage_render import (
    metric_families,
    render_csv,
    render_json,
    render_table,
)
from orchestrator.insight.ledgers import several
from orchestrator.insight.metrics import write_families
from orchestrator.service.connect import Connection
from orchestrator.service.preflight import patience, preflight
from orchestrator.service.records import RecordReader

__all__ = [
    "coverage_config",
    "for_coverage",
    "launch_coverage",
    "load_facts",
    "measure",
    "parse_duration",
    "write_coverage",
]

log = structlog.get_logger("orchestrator.coverage")

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PROGRESS_EVERY: Final = 10_000
_SHOW_EVERY: Final = 500
# --region-to names regions only; the fold never uses a destination project.
_NO_PROJECT: Final = "0" * 32


def parse_duration(text: str, *, what: str = "--rpo") -> float:
    """``26h``, ``1d2h``, ``90m`` or plain seconds, as seconds (> 0)."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        if not value or _DURATION.sub("", value).strip():
            raise ConfigError(f"{what} {text!r}: a duration such as 26h, 1d12h or 90m") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    if not seconds > 0:
        raise ConfigError(f"{what} {text!r}: must be more than zero")
    return seconds


def coverage_config(
    config: Mapping[str, Any],
    settings: RunSettings,
    *,
    region_to: Sequence[str] = (),
    config_path: str | None = None,
    now: datetime | None = None,
) -> DiscoverConfig:
    """The sources and destination rules of ``[discover]``; ``region_to`` replaces the rules
    with one catch-all per region. See :func:`for_coverage` for what is listed."""
    base = DiscoverConfig.from_settings(settings, config, now=now, path=config_path)
    if region_to:
        rules = tuple(Rule((Destination(_region(r), _NO_PROJECT),)) for r in region_to)
        base = replace(base, rules=rules)
    base = for_coverage(base)
    if not base.rules:
        raise ConfigError(
            "coverage: no destination: add [[discover.rules]] to the config or pass "
            "--region-to REGION"
        )
    # Coverage reads, never replicates: a CBR destination needs no vault here.
    replace(base, service="csbs", vaults={}).check()
    return base


def for_coverage(config: DiscoverConfig) -> DiscoverConfig:
    """Discovery's sources and rules, listing every backup: of every status (a copy of a
    backup no longer ``available`` still protects its resource) and of any age (a
    ``created_since`` window would hide the older copies a region holds)."""
    return replace(config, filters=replace(config.filters, status=None, created_since=None))


def _region(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[a-z]{2,}(?:-[a-z0-9]+)+", value):
        raise ConfigError(f"--region-to {text!r}: a region name like cn-east-2")
    return value


def load_facts(ledgers: Sequence[str | os.PathLike[str]]) -> dict[tuple[str, str], LedgerFact]:
    """The tool's own history from every ledger given; a directory stands for every
    ``*.jsonl`` or ``*.jsonl.gz`` file in it (a schedule's dated ledgers). A missing path is
    a usage error."""
    paths: list[Path] = []
    for given in map(Path, ledgers):
        if given.is_dir():
            # compressed ones too (the schedule's retention gzips its older ledgers)
            found = [*given.glob("*.jsonl"), *given.glob("*.jsonl.gz")]
            paths += sorted(found, key=lambda p: p.name.removesuffix(".gz"))
        elif given.is_file():
            paths.append(given)
        else:
            raise ConfigError(f"{given}: no such ledger")
    return ledger_facts(several(paths))


async def measure(
    conn: Connection,
    config: DiscoverConfig,
    facts: Mapping[tuple[str, str], LedgerFact],
    *,
    rpo_s: float,
    now: float | None = None,
    retry: RetryPolicy | None = None,
    on_listed: Callable[[Source, int], None] | None = None,
    pacing: Pacing | None = None,
    region_to: Sequence[str] = (),
) -> Coverage:
    """List every source once (streamed; only per-resource summaries are kept) and judge.
    ``on_listed(source, backups listed so far)`` is called every few hundred backups (a
    terminal's progress line). ``region_to``: the regions ``--region-to`` named, refused
    when no source region replicates there."""
    fold = CoverageFold(facts)
    reader = RecordReader()  # one for the listing: an unknown copy word is logged once
    listed = 0
    pacing = pacing or Pacing.from_settings(conn.settings)
    async with conn.client() as opened:
        client = pacing.wrap(opened)  # each page at its endpoint and project's pace
        if config.sources:  # unreachable, refused or not CSBS: one request, not a listing's retries
            first = config.sources[0]
            caps = await preflight(
                client, first.project_id, region=first.region, give_up_after=patience(conn.settings)
            )
            _refuse_unreplicable(region_to, config.sources, caps)
        for source in dict.fromkeys(config.sources):
            async for item in list_source(
                client, source, config, retry=retry or RetryPolicy.from_settings(conn.settings)
            ):
                listed += 1
                if on_listed is not None and listed % _SHOW_EVERY == 0:
                    on_listed(source, listed)
                if listed % _PROGRESS_EVERY == 0:
                    log.info("coverage.listing", source=str(source), items=listed)
                seen = observe(
                    item,
                    project_id=source.project_id,
                    source_region=source.region,
                    targets=destinations_for(item, source, config),
                    reader=reader,
                )
                if seen is not None:
                    fold.add(seen)
    log.info("coverage.listed", items=listed, protected=fold.items)
    return fold.result(now=time.time() if now is None else now, rpo_s=rpo_s)


def _refuse_unreplicable(
    region_to: Sequence[str], sources: Sequence[Source], caps: Mapping[str, list[str]]
) -> None:
    """A ``--region-to`` that no listed source region replicates to would show every resource
    as "never copied" there: a misspelt region is far likelier than that estate."""
    regions = [s for s in dict.fromkeys(s.region for s in sources) if s in caps]
    if not regions:  # a transient answer (no capabilities), or regions the service omits
        return
    reachable = {dest for region in regions for dest in caps[region]}
    for wanted in region_to:
        if wanted not in reachable:
            said = "; ".join(
                f"{r} replicates to {', '.join(caps[r]) or 'nothing'}" for r in regions
            )
            raise ConfigError(f"--region-to {wanted}: no source region replicates there ({said})")


_RENDER = {"table": render_table, "json": render_json, "csv": render_csv}


def render(coverage: Coverage, fmt: str) -> bytes:
    if fmt == "html":
        try:
            from orchestrator.insight.html import coverage_html  # noqa: PLC0415 - plotly is heavy
        except ImportError as exc:
            raise ConfigError(
                "--format html needs plotly: pip install 'csbs-orchestrator[html]'"
            ) from exc
        return coverage_html(coverage).encode()
    return _RENDER[fmt](coverage).encode()


def write_coverage(coverage: Coverage, fmt: str, output: str | None) -> None:
    data = render(coverage, fmt)
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        replace_file(Path(output), data)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror}") from None


@contextmanager
def _status(console: Console | None) -> Iterator[Callable[[Source, int], None] | None]:
    """A one-line live status on a terminal (``listing cn-north-1/...: 12,500 backups``)."""
    if console is None:
        yield None
        return
    with console.status("listing backups ...") as status:

        def show(source: Source, listed: int) -> None:
            status.update(f"listing {source}: {listed:,} backups")

        yield show


def _at(text: str) -> float:
    """``--at``: an ISO time or an age, as a timestamp; the error names the flag."""
    try:
        return parse_since(text).timestamp()
    except ConfigError:
        raise ConfigError(
            f"--at {text!r}: an ISO time (2026-03-01T00:00:00, UTC if no zone) or an age (36h, 7d)"
        ) from None


def launch_coverage(ctx: Context) -> int:
    """``coverage``: exit 0 when every resource x region is covered, 3 otherwise."""
    args = ctx.args
    output = open_output(ctx)
    try:
        rpo_s = parse_duration(args.rpo)
        facts = load_facts(args.ledger or ())
        at = None if args.at is None else _at(args.at)

        async def main(show: Callable[[Source, int], None] | None) -> Coverage:
            async with connect(ctx) as conn:
                dconfig = coverage_config(
                    ctx.config,
                    conn.settings,
                    region_to=args.region_to or (),
                    config_path=args.config,
                    now=datetime.now(UTC),
                )
                pacing = Pacing.from_settings(conn.settings)
                measured = await measure(
                    conn,
                    dconfig,
                    facts,
                    rpo_s=rpo_s,
                    now=at,
                    on_listed=show,
                    pacing=pacing,
                    region_to=[_region(r) for r in args.region_to or ()],
                )
                pacing.save()
                return measured

        with _status(output.console if output.live else None) as show:
            coverage = anyio.run(main, show)
        write_coverage(coverage, args.format, args.output)
        if args.coverage_metrics_file:
            try:
                write_families(args.coverage_metrics_file, metric_families(coverage))
            except OSError as exc:
                raise ConfigError(
                    f"{args.coverage_metrics_file}: cannot write the metrics: {exc.strerror}"
                ) from None
        return ExitCode.OK if coverage.all_covered else ExitCode.FAILED
    finally:
        close_logging()
