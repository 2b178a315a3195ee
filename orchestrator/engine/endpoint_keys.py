"""A ``[connection.endpoints]`` key that names no region of the manifest: most often a typo
(``cn-nort-4``), and the region meant then silently goes to the public endpoint. A warning,
not an error: one config file may serve several manifests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from orchestrator.config.settings import RunSettings
from orchestrator.engine.job_spec import JobSpec
from orchestrator.engine.plan import Plan

__all__ = ["plan_endpoints_note", "unused_endpoints_note", "warn_unused_endpoints"]

log = structlog.get_logger("orchestrator.plan")


def unused_endpoints_note(
    endpoints: Mapping[str, str], used: Iterable[str], default_region: str | None = None
) -> str | None:
    """What to tell when some endpoint keys name none of the ``used`` regions, else None."""
    named = {r for r in used if r} | ({default_region} if default_region else set())
    unused = sorted(set(endpoints) - named)
    if not unused:
        return None
    keys = ", ".join(repr(k) for k in unused)
    return (
        f"[connection.endpoints] {keys}: no row of the manifest uses "
        f"{'this region' if len(unused) == 1 else 'these regions'} (a typo? the manifest uses "
        f"{', '.join(sorted(named)) or 'no region'}; a region without a key goes to the "
        "public endpoint)"
    )


def plan_endpoints_note(
    settings: RunSettings, plan: Plan, endpoints: Mapping[str, str] | None = None
) -> str | None:
    """:func:`unused_endpoints_note` for a plan's rows (no pass over them without keys);
    ``endpoints``: the table to check, if not the settings'."""
    endpoints = settings.connection.endpoints if endpoints is None else endpoints
    if not endpoints:
        return None
    return unused_endpoints_note(endpoints, plan.regions_named(), settings.connection.region)


def warn_unused_endpoints(spec: JobSpec, plan: Plan) -> None:
    """Log :func:`plan_endpoints_note` as a warning, when there is one. Not for a discovered
    run: its pairs come from the sources of ``[discover]``, listed at these endpoints."""
    if spec.source == "discover":
        return
    note = plan_endpoints_note(spec.settings, plan, spec.configured_endpoints)
    if note is not None:
        log.warning("config.endpoints_unused", note=note)
