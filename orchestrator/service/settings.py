"""How to reach the service: :class:`ClientSettings` (endpoints, timeouts, limits, TLS, caps),
projected from the run's settings by :meth:`ClientSettings.from_settings`, and the check of an
endpoint URL before anything is sent to it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import yarl

from orchestrator import __version__
from orchestrator.config.settings import RunSettings
from orchestrator.errors import ConfigError, ErrorTable
from orchestrator.service.transport_policy import check_endpoint

__all__ = ["MAX_BODY", "ClientSettings", "Timeouts"]

_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
#: The default cap on an answer's body (see ClientSettings.max_body_bytes).
MAX_BODY = 64 << 20


@dataclass(frozen=True, slots=True)
class Timeouts:
    """aiohttp's ``ClientTimeout``, in seconds. ``total`` covers the whole call including any
    wait for a pooled connection, so keep the connector limits above the pool's own.

    ``read_s`` (no data for that long) applies to GETs, whose listing pages can be long. A
    POST's answer is a few hundred bytes that ``total_s`` already bounds, and a read timeout
    re-arms a timer on every chunk received: a cost per replicate request worth not paying.
    """

    total_s: float = 60.0
    connect_s: float = 10.0
    read_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach CSBS. Each call's source region (or ``region`` as the default) picks its
    base URL: ``endpoints[region]`` first (one endpoint per source region, as the real
    service has: private clouds, the simulator), else ``endpoint`` (one URL for every
    region), else ``endpoint_template``."""

    endpoint: str | None = None
    region: str | None = None
    endpoint_template: str = "https://csbs.{region}.myhuaweicloud.com"
    endpoints: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limit: int = 256
    limit_per_host: int = 0
    """0: no per-host limit (the pool's limiters decide)."""
    verify_tls: bool = True
    ca_file: str | None = None
    """A PEM bundle of CA certificates to trust instead of the system store (a private CA)."""
    allow_plain_http: bool = False
    """``--insecure``: accept ``http://`` to a non-loopback host (no credential is sent there)."""
    error_table: ErrorTable = field(default_factory=ErrorTable)
    retry_after_cap_s: float = 60.0
    max_body_bytes: int = MAX_BODY
    """An answer longer than this is not read (a listing page of 1000 items is ~2 MB)."""
    resolver: aiohttp.abc.AbstractResolver | None = field(default=None, compare=False)
    """Name resolution (None: aiohttp's default, cached 300 s); tests inject failing ones."""
    user_agent: str = f"csbs-orchestrator/{__version__}"

    @classmethod
    def from_settings(cls, settings: RunSettings) -> ClientSettings:
        """The client's share of the run's settings: ``[connection]`` (endpoints, timeout,
        TLS; ``--insecure`` also lets plain http:// through to hosts that get no credential),
        ``[errors] codes``, and a connection pool twice ``[limits] concurrency`` (256 at
        least) so that a request never waits for a socket the pool's limiters already gave."""
        conn = settings.connection
        return cls(
            endpoint=conn.endpoint,
            region=conn.region,
            endpoints=dict(conn.endpoints),
            timeouts=Timeouts(total_s=conn.request_timeout),
            limit=max(256, settings.limits.concurrency * 2),
            verify_tls=conn.verify_tls,
            ca_file=conn.ca_file,
            allow_plain_http=not conn.verify_tls,
            error_table=ErrorTable.with_overrides(settings.errors.error_codes),
        )

    def endpoint_for(self, region: str | None) -> str:
        """The base URL (no trailing ``/``) for calls whose source region is ``region``."""
        region = region or self.region
        if region is not None and region in self.endpoints:
            base = _checked_base(self.endpoints[region])
        elif self.endpoint:
            base = _checked_base(self.endpoint)
        else:
            if region is None:
                raise ConfigError("no CSBS endpoint: set an endpoint URL or a source region")
            if not _REGION.fullmatch(region):
                raise ConfigError(f"invalid region name {region!r}")
            base = _checked_base(self.endpoint_template.format(region=region))
        check_endpoint(base, insecure=self.allow_plain_http)
        return base


def _checked_base(url: str) -> str:
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid endpoint URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"invalid endpoint URL {url!r}: need http(s)://host[:port]")
    if parsed.user or parsed.password:
        # Said without echoing the URL: it holds a credential.
        raise ConfigError("invalid endpoint URL: credentials in the URL are not supported")
    if parsed.query_string or parsed.fragment:
        raise ConfigError(f"invalid endpoint URL {url!r}: no query or fragment allowed")
    if parsed.path not in ("", "/"):
        # Every call adds /v1/<project_id>/...: a path here doubles it and every pair would
        # end as a permanent 404.
        base = parsed.with_path("").with_query(None)
        raise ConfigError(
            f"invalid endpoint URL {url!r}: no path allowed; use {str(base).rstrip('/')} "
            "(the tool adds /v1/<project_id>/...)"
        )
    return str(parsed).rstrip("/")
