"""One cheap signed GET before anything else: are the endpoint, credentials and project right?

A run used to find a wrong secret key by sending its first replications: four bad
signatures a run, and the service locks an access key after five in a row (for everyone,
for five minutes), so a second attempt locked it. The preflight asks
``GET /replication_capabilities`` once; the answer proves the endpoint is a CSBS endpoint,
the signature is accepted and the project exists. A refusal costs exactly one bad request.

What it raises (the CLI maps each to its documented exit code):

=======================================  =========================================  ====
the answer                               raised                                     exit
=======================================  =========================================  ====
401 / 403                                :class:`AuthError` (as the client maps it)  7
no connection for ``give_up_after`` s    :class:`ServiceUnreachableError`           4
404, or a 2xx that is not CSBS's JSON    :class:`ConfigError` naming what to fix    2
another 4xx (a bad project id, ...)      :class:`ConfigError` with the service's    2
                                         message
503, 429, other 5xx                      nothing: the run's retries deal with them  --
=======================================  =========================================  ====
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import anyio
import structlog

from orchestrator.config.settings import RunSettings
from orchestrator.errors import (
    AuthError,
    ConfigError,
    PermanentApiError,
    ServiceUnreachableError,
    TransientApiError,
    TransportError,
)

__all__ = ["HasCapabilities", "patience", "preflight"]

log = structlog.get_logger("orchestrator.preflight")

#: Waits between two tries of a preflight that could not connect: short, then capped.
_FIRST_WAIT_S = 0.25
_MAX_WAIT_S = 5.0

_WHAT_IS_CSBS = (
    "check --endpoint: it is the CSBS base URL without a path, "
    "e.g. https://csbs.cn-north-1.myhuaweicloud.com (the tool adds /v1/<project_id>/...)"
)


@runtime_checkable
class HasCapabilities(Protocol):
    """A service client that can answer the preflight."""

    async def capabilities(
        self, project_id: str, *, region: str | None = None
    ) -> dict[str, list[str]]: ...


def patience(settings: RunSettings) -> float:
    """How long a service never reached is tried: ``--unreachable-after`` (at most the retry
    time, as for a pair); with 0 (off), the retry time."""
    unreachable = settings.retry.unreachable_s
    return settings.retry.retry_time if unreachable is None else unreachable


async def preflight(
    client: HasCapabilities,
    project_id: str,
    *,
    region: str | None = None,
    give_up_after: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> dict[str, list[str]]:
    """Ask the capabilities once (again only while no connection could be made, for at most
    ``give_up_after`` seconds); returns them, or an empty mapping when the service answered
    with a transient error (503, 429, 5xx) that the run itself will retry."""
    started = clock()
    wait = _FIRST_WAIT_S
    while True:
        try:
            return await client.capabilities(project_id, region=region)
        except AuthError:
            raise
        except TransportError as exc:
            waited = clock() - started
            if waited + wait > give_up_after:
                raise ServiceUnreachableError(
                    f"no answer from the service in {waited:.1f}s ({exc}); check --endpoint "
                    "(or --region) and the network; nothing was sent"
                ) from exc
            log.warning("preflight.no_connection", error=str(exc), retry_in_s=wait)
            await sleep(wait)
            wait = min(wait * 2, _MAX_WAIT_S)
        except PermanentApiError as exc:
            raise _refused(exc, project_id) from exc
        except TransientApiError as exc:
            if exc.http_status is not None and exc.http_status < 300:
                raise ConfigError(
                    f"the endpoint does not answer like CSBS ({exc}); {_WHAT_IS_CSBS}"
                ) from exc
            log.warning("preflight.transient", error=str(exc), hint="the run retries")
            return {}


def _refused(exc: PermanentApiError, project_id: str) -> ConfigError:
    if exc.http_status == 404:
        return ConfigError(
            f"GET /v1/{project_id}/replication_capabilities answered 404 ({exc}): the endpoint "
            f"is not a CSBS endpoint or the project does not exist; {_WHAT_IS_CSBS}, and "
            "check the project id"
        )
    return ConfigError(
        f"the service refused the preflight request ({exc}): check the project id "
        "(--project-id or the manifest's project_id) and the endpoint"
    )
