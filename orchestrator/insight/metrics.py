"""Prometheus metrics of the last run, as a text file for node_exporter's textfile collector.

Point ``--metrics-file`` into the collector's directory (``--collector.textfile.directory``),
with a name ending in ``.prom``. The file is replaced atomically at the end of each run: a
temporary file in the same directory (named ``.<name>.<random>.tmp``, which the collector
ignores), fsync, ``os.replace``, fsync of the directory. A scrape sees the previous run or this
one, never half a file.

Every value describes the **last run** (the file is rewritten, not accumulated), so every
metric is a gauge, including the three whose names end in ``_total`` (they are totals of that
run). ``last_success_timestamp_seconds`` is carried over from the previous file when this run
replicated nothing, so that "no replication for two days" stays a one-line alert::

    time() - csbs_orchestrator_last_success_timestamp_seconds > 2 * 86400

While a run goes on, :func:`publish_live` rewrites the same file every 30 s with what the run
has done so far (``run_in_progress 1``, ``progress_*``, ``pace_*``): a dashboard or an alert sees
a stalled or throttled run while it happens. The run's end writes it once more with
``run_in_progress 0``. ``pace_*`` carry the rate the service allows each ``endpoint/project``
(learned from its 429s, see ``docs/pace.md``) and the requests it accepted and throttled.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from orchestrator.atomic_file import replace_file
from orchestrator.engine.live import RunSnapshot
from orchestrator.insight.report_model import STATUS_ORDER, Report
from orchestrator.models import ResultStatus

__all__ = [
    "PREFIX",
    "Family",
    "RunMetrics",
    "live_metrics",
    "publish_live",
    "render_families",
    "render_metrics",
    "write_families",
    "write_textfile",
]

log = structlog.get_logger("orchestrator.insight.metrics")

#: How often a running job rewrites its metrics file.
LIVE_INTERVAL_S = 30.0

PREFIX = "csbs_orchestrator_"
_LAST_SUCCESS = f"{PREFIX}last_success_timestamp_seconds"

#: (name without the prefix, help text, [(labels, value)]): gauges another module adds to
#: the file (coverage, issue 18).
Family = tuple[str, str, Sequence[tuple[Mapping[str, str], float]]]


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """What one run reports. The pool/CLI fills it when the run ends.

    ``results``: pairs per (destination region, status) in this run.
    ``finished_at`` and ``last_success_at`` are Unix timestamps (seconds); ``last_success_at``
    is when a pair was last replicated (None: not in this run).
    """

    results: Mapping[tuple[str, str], int] = field(default_factory=dict)
    duration_s: float = 0.0
    retries: int = 0
    requests: int = 0
    finished_at: float = 0.0
    last_success_at: float | None = None
    exit_code: int = 0
    interrupted: bool = False
    #: Per ``endpoint/project``: limit, rate, accepted, throttled (empty: never paced).
    pace: Mapping[str, Mapping[str, float | int | None]] = field(default_factory=dict)
    #: Written while the run goes on (then ``pairs_done``, ``pairs_total``, ``eta_s`` apply).
    in_progress: bool = False
    pairs_done: int = 0
    pairs_total: int = 0
    eta_s: float | None = None

    @classmethod
    def from_report(cls, report: Report, *, finished_at: float) -> RunMetrics:
        """The metrics of the last run of ``report`` (build it with ``run=<run id>``).

        ``last_success_at`` is ``finished_at`` when the run replicated at least one pair
        (``already_replicated`` is not new work and does not count).
        """
        run = report.runs[-1] if report.runs else None
        replicated = report.totals.get(ResultStatus.REPLICATED, 0)
        return cls(
            results=dict(report.counts),
            duration_s=(run.duration_s if run else None) or 0.0,
            retries=(run.retries if run else None) or report.retries,
            requests=(run.requests if run else None) or 0,
            finished_at=finished_at,
            last_success_at=finished_at if replicated else None,
            exit_code=(run.exit_code if run else None) or 0,
            interrupted=bool(run.interrupted) if run else False,
        )


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _family(name: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {PREFIX}{name} {_escape_help(help_text)}", f"# TYPE {PREFIX}{name} gauge"]
    lines += [f"{PREFIX}{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def render_metrics(metrics: RunMetrics, *, previous_success: float | None = None) -> str:
    """The exposition text. ``previous_success`` stands in when this run replicated nothing."""
    # Every status of every region seen, zeros included: a series that vanishes when a run
    # has no failures would leave gaps in graphs and stale values in alerts.
    regions = sorted({region for region, _ in metrics.results})
    extra = sorted({status for _, status in metrics.results} - set(STATUS_ORDER))
    results = [
        (
            f'{{destination_region="{_escape_label(region)}",status="{_escape_label(status)}"}}',
            float(metrics.results.get((region, status), 0)),
        )
        for region in regions
        for status in (*STATUS_ORDER, *extra)
    ]
    lines = _family(
        "results_total", "Pairs by final status in the last run, per destination region.", results
    )
    lines += _family(
        "run_duration_seconds", "Wall-clock duration of the last run.", [("", metrics.duration_s)]
    )
    lines += _family(
        "retries_total", "Replicate requests re-sent in the last run.", [("", metrics.retries)]
    )
    lines += _family(
        "requests_total", "Replicate requests sent in the last run.", [("", metrics.requests)]
    )
    lines += _family(
        "last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        [("", metrics.finished_at)],
    )
    success = metrics.last_success_at if metrics.last_success_at is not None else previous_success
    if success is not None:
        lines += _family(
            "last_success_timestamp_seconds",
            "When a run last replicated a pair (Unix time).",
            [("", success)],
        )
    lines += _family(
        "run_exit_code",
        "Exit code of the last run (0: every pair done).",
        [("", metrics.exit_code)],
    )
    lines += _family(
        "run_interrupted",
        "1 if the last run was stopped by a signal or --max-duration.",
        [("", 1.0 if metrics.interrupted else 0.0)],
    )
    lines += _family(
        "run_in_progress",
        "1 while a run goes on (this file is rewritten every 30 s), 0 once it ended.",
        [("", 1.0 if metrics.in_progress else 0.0)],
    )
    if metrics.in_progress:
        lines += _progress_lines(metrics)
    return "\n".join(lines + _pace_lines(metrics.pace)) + "\n"


def _progress_lines(metrics: RunMetrics) -> list[str]:
    lines = _family(
        "progress_pairs_done", "Pairs with a final result so far.", [("", metrics.pairs_done)]
    )
    lines += _family(
        "progress_pairs_total", "Pairs the running run is to send.", [("", metrics.pairs_total)]
    )
    if metrics.eta_s is not None:
        lines += _family(
            "progress_eta_seconds",
            "Estimated time left, at the rate of the last interval.",
            [("", round(metrics.eta_s, 1))],
        )
    return lines


def _pace_lines(pace: Mapping[str, Mapping[str, float | int | None]]) -> list[str]:
    if not pace:
        return []
    keys = sorted(pace)

    def label(key: str, **extra: str) -> str:
        parts = [f'endpoint_project="{_escape_label(key)}"']
        parts += [f'{k}="{_escape_label(v)}"' for k, v in extra.items()]
        return "{" + ",".join(parts) + "}"

    def value(key: str, name: str) -> float:
        got = pace[key].get(name)
        return math.nan if got is None else float(got)

    lines = _family(
        "pace_limit_requests_per_second",
        "The rate the service allows, learned from its 429s (NaN: never throttled).",
        [(label(k), value(k, "limit")) for k in keys],
    )
    lines += _family(
        "pace_rate_requests_per_second",
        "The rate the run sends at (+Inf: unpaced).",
        [(label(k), math.inf if pace[k].get("rate") is None else value(k, "rate")) for k in keys],
    )
    lines += _family(
        "pace_requests_total",
        "Requests answered, by whether the gateway accepted or throttled them.",
        [
            (label(k, answer=answer), value(k, answer))
            for k in keys
            for answer in ("accepted", "throttled")
        ],
    )
    return lines


_SAMPLE = re.compile(rf"^{re.escape(_LAST_SUCCESS)}\s+(\S+)\s*$", re.MULTILINE)


def _previous_success(path: Path) -> float | None:
    """The last-success timestamp the previous file carried, if it is readable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = _SAMPLE.search(text)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


def render_families(families: Sequence[Family]) -> str:
    """Labelled gauges as exposition text (label values escaped)."""
    lines: list[str] = []
    for name, help_text, samples in families:
        rendered = []
        for labels, value in samples:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            rendered.append((f"{{{inner}}}" if inner else "", value))
        lines += _family(name, help_text, rendered)
    return "\n".join(lines) + "\n" if lines else ""


def write_families(path: str | os.PathLike[str], families: Sequence[Family]) -> None:
    """Replace ``path`` atomically with these gauges alone (``coverage --metrics-file``)."""
    replace_file(Path(path), render_families(families).encode())


def write_textfile(
    path: str | os.PathLike[str], metrics: RunMetrics, *, extra: Sequence[Family] = ()
) -> None:
    """Replace ``path`` atomically with the metrics of this run.

    Raises OSError when the directory is not writable; the CLI logs that (``metrics.failed``)
    and keeps the run's exit code: metrics never turn a good run into a failed one.
    """
    target = Path(path)
    text = render_metrics(metrics, previous_success=_previous_success(target))
    text += render_families(extra)
    # 0644, as documented: node_exporter usually runs as another user. Counts only, no ids.
    replace_file(target, text.encode(), mode=0o644)


def live_metrics(
    snap: RunSnapshot, *, elapsed_s: float, eta_s: float | None, now: float
) -> RunMetrics:
    """The metrics of a run still going on."""
    replicated = snap.counts.get(str(ResultStatus.REPLICATED), 0)
    return RunMetrics(
        duration_s=round(elapsed_s, 3),
        retries=snap.retries,
        requests=snap.requests,
        finished_at=now,
        last_success_at=now if replicated else None,
        pace=snap.pace,
        in_progress=True,
        pairs_done=snap.done,
        pairs_total=snap.total,
        eta_s=eta_s,
    )


async def publish_live(
    path: str | os.PathLike[str],
    snapshot: Callable[[], RunSnapshot],
    *,
    interval_s: float = LIVE_INTERVAL_S,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> None:
    """Rewrite the metrics file every ``interval_s`` until cancelled (the run's end writes the
    final one). A failed write is logged once and tried again next time: metrics never stop a
    run. The ETA is what is left at the rate of the last interval."""
    started = clock()
    last: tuple[float, int] | None = None
    warned = False
    while True:
        await sleep(interval_s)
        snap, now = snapshot(), clock()
        eta = None
        if last is not None and snap.done > last[1] and now > last[0]:
            eta = (snap.total - snap.done) * (now - last[0]) / (snap.done - last[1])
        last = (now, snap.done)
        metrics = live_metrics(snap, elapsed_s=now - started, eta_s=eta, now=wall())
        try:
            await anyio.to_thread.run_sync(write_textfile, path, metrics)
        except OSError as exc:
            if not warned:
                log.warning("metrics.failed", path=str(path), error=str(exc))
            warned = True
