"""Listing one source: paged, each item once, restarted with backoff on a transient error."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import structlog

from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.engine.retry import RetryPolicy, hinted_delay
from orchestrator.errors import TransientApiError

__all__ = ["ItemLister", "Sleep", "list_source"]

log = structlog.get_logger("orchestrator.discovery.discover")


class ItemLister(Protocol):
    """What discovery needs of the client (:meth:`CsbsClient.iter_items`)."""

    def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]: ...


Sleep = Callable[[float], Awaitable[None]]


async def _list(
    client: ItemLister, source: Source, config: DiscoverConfig, policy: RetryPolicy, sleep: Sleep
) -> AsyncIterator[dict[str, Any]]:
    """Every listed item once; a transient failure restarts the listing after a backoff."""
    seen: set[str] = set()
    attempt = 0
    while True:
        attempt += 1
        try:
            async for item in client.iter_items(
                source.project_id,
                region=source.region,
                page_size=config.page_size,
                **config.filters.query(),
            ):
                item_id = item.get("id") if isinstance(item, dict) else None
                if not isinstance(item_id, str) or item_id in seen:
                    continue
                seen.add(item_id)
                yield item
        except TransientApiError as exc:
            if attempt >= policy.max_attempts:
                raise
            delay = hinted_delay(policy, exc, policy.backoff(attempt, random.random), random.random)
            log.warning(
                "discover.retry", source=str(source), attempt=attempt, wait_s=delay, error=str(exc)
            )
            await sleep(delay)
            continue
        return


def list_source(
    client: ItemLister,
    source: Source,
    config: DiscoverConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = anyio.sleep,
) -> AsyncIterator[dict[str, Any]]:
    """Every item of one source once, paged, restarted with backoff on a transient error
    (what ``coverage`` lists too)."""
    return _list(client, source, config, retry or RetryPolicy(), sleep)
