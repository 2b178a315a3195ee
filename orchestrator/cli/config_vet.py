"""``config check`` refuses what a command would refuse (exit 2, as its --help says).

The settings table checks every key and value it knows, but some parts of the file are only
read, and so only checked, by their own command: ``[discover]`` (keys, sources, rules),
``[simulator]`` (knobs), ``[schedule]`` (the cron expression and time zone),
``[errors.codes]`` and the endpoint URLs (checked when the client is built). Without this,
``config check`` passes a file that the nightly ``schedule`` or a ``run`` then refuses. Each
check here is the command's own; nothing is sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import yarl

from orchestrator.cli.coverage import parse_duration
from orchestrator.cli.simulated import simulator_config
from orchestrator.config.schedule_settings import ScheduleSettings
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.rules import DiscoverConfig
from orchestrator.errors import ConfigError, ErrorTable
from orchestrator.scheduling.cron import CronSchedule
from orchestrator.service.settings import ClientSettings
from orchestrator.service.transport_policy import check_endpoint

__all__ = ["refuse_what_commands_would"]


def refuse_what_commands_would(
    args: argparse.Namespace,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    settings: RunSettings,
    sources: Mapping[str, str],
) -> None:
    """Raise :class:`ConfigError` for the first part a command would refuse. ``sources``:
    each setting's source as ``config check`` shows it ("file prod.toml [connection.region]"),
    to say where a refused value came from."""
    path = getattr(args, "config", None)
    _endpoints(settings, sources, path)
    # Built by each command's client: an unknown class would be refused there.
    _said(
        f"file {path} [errors.codes]",
        lambda: ErrorTable.with_overrides(settings.errors.error_codes),
    )
    if "discover" in config:
        DiscoverConfig.from_config(config, path=path, service=settings.connection.service)
    if "simulator" in config:
        simulator_config(args, config)
    _schedule(args, env, config, sources, path)


def _endpoints(settings: RunSettings, sources: Mapping[str, str], path: str | None) -> None:
    insecure = not settings.connection.verify_tls

    def check(source: str, **where: Any) -> None:
        _said(source, lambda: ClientSettings(allow_plain_http=insecure, **where).endpoint_for(None))

    if settings.connection.endpoint:
        check(sources.get("endpoint", "default"), endpoint=settings.connection.endpoint)
    elif settings.connection.region:
        # No endpoint: the region names the default one (https://csbs.{region}...).
        check(sources.get("region", "default"), region=settings.connection.region)
    if settings.auth.iam_endpoint:
        # Checked as the client checks it: a scheme and a host, plain HTTP only to loopback.
        # (A path is not refused: IAM behind a proxy may have one; a wrong one is a 404 that
        # the token call explains.)
        iam = settings.auth.iam_endpoint
        _said(sources.get("iam_endpoint", "default"), lambda: _iam_url(iam, insecure))
    for region, url in settings.connection.endpoints.items():
        check(f"file {path} [connection.endpoints] {region!r}", endpoint=url)


def _iam_url(url: str, insecure: bool) -> None:
    parsed = yarl.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"invalid IAM endpoint URL {url!r}: need http(s)://host[:port]")
    check_endpoint(url, insecure=insecure, what="IAM endpoint")


def _schedule(
    args: argparse.Namespace,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    sources: Mapping[str, str],
    path: str | None,
) -> None:
    s = ScheduleSettings.resolve(vars(args), env, config, config_path=path)
    if s.tz:
        _said(sources.get("tz", "default"), lambda: CronSchedule("@daily", str(s.tz)))
    if s.cron:
        _said(sources.get("cron", "default"), lambda: CronSchedule(str(s.cron), "UTC"))
    if s.coverage:
        _said(sources.get("rpo", "default"), lambda: parse_duration(s.rpo, what="rpo"))


def _said(source: str, check: Callable[[], object]) -> None:
    """Run ``check``; a refusal says where the refused value came from."""
    try:
        check()
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({source})") from None
