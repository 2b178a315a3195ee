"""Listing one source: paged, each item once; a page that fails is asked again, not the listing.

The client pages by ``marker`` (the last item's id, see
:meth:`~orchestrator.service.client.CsbsClient.iter_items`), and asks for the next page only
once every item of the page in hand was taken. So when a page's GET fails, the last item this
module took is the failed page's marker: the listing goes on from there (the same GET, after
the tool's backoff and jitter), keeping every item the earlier pages gave. Only that page's
failures count against the retry policy (``--max-attempts``, ``--retry-time``): a page that
comes back resets them, so an estate of hundreds of thousands of backups behind a flaky or
throttled gateway is listed to the end, page after page, instead of restarting from the first
page at every 503 and never finishing.

An id seen once is never yielded again (a service that ignored a marker, or items that moved
between pages while the listing ran: see ``docs/discovery.md``, "Listing a large estate").
A marker the service refuses (its backup deleted meanwhile) sends the listing back a page, or
to the first page if that one's is gone too: a few pages again, never the night's listing lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import structlog

from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.engine.retry import RetryPolicy, hinted_delay
from orchestrator.errors import PermanentApiError, TransientApiError

__all__ = ["Clock", "ItemLister", "Sleep", "list_source"]

log = structlog.get_logger("orchestrator.discovery.discover")


class ItemLister(Protocol):
    """What discovery needs of the client (:meth:`CsbsClient.iter_items`)."""

    def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        marker: str | None = None,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]: ...


Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# How a service refuses a marker it does not know (the simulator: 400, as OpenStack's
# "marker not found"; a 404 is read the same): the page after it is asked from further back.
_MARKER_GONE = frozenset({400, 404})


class _PageRetry:
    """The failures of the page being asked for: how many, since when; reset by a page that
    came back."""

    __slots__ = ("_clock", "_policy", "failures", "since")

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self.failures = 0
        self.since = 0.0

    def delay(self, exc: TransientApiError) -> float | None:
        """The wait before asking for the page again; None: give up on it (the policy's
        attempts spent, or the wait would cross its elapsed-time limit)."""
        policy = self._policy
        self.failures += 1
        if self.failures == 1:
            self.since = self._clock()
        if self.failures >= policy.max_attempts:
            return None
        backoff = policy.backoff(self.failures, random.random)
        wait = hinted_delay(policy, exc, backoff, random.random)
        if self._clock() - self.since + wait >= policy.max_elapsed_s:
            return None
        return wait


async def _list(
    client: ItemLister,
    source: Source,
    config: DiscoverConfig,
    retry: _PageRetry,
    sleep: Sleep,
) -> AsyncIterator[dict[str, Any]]:
    """Every listed item once; a transient failure asks for the failed page again."""
    seen: set[str] = set()
    marker: str | None = None  # the last id the service gave: where the next page starts
    ends: list[str] = []  # the last id of every full page taken: where to go back to
    gone = 0  # markers refused in a row (see _MARKER_GONE)
    refused: set[str] = set()  # a backup deleted is never a marker again
    pages_retried = 0
    while True:
        pulled = 0
        try:
            async for item in client.iter_items(
                source.project_id,
                region=source.region,
                page_size=config.page_size,
                marker=marker,
                **config.filters.query(),
            ):
                retry.failures = gone = 0  # the page came back
                pulled += 1
                item_id = item.get("id") if isinstance(item, dict) else None
                if not isinstance(item_id, str):
                    continue
                marker = item_id
                if pulled % config.page_size == 0:
                    ends.append(item_id)
                if item_id in seen:
                    continue
                seen.add(item_id)
                yield item
        except PermanentApiError as exc:
            if marker is None or exc.http_status not in _MARKER_GONE or marker in refused:
                raise  # not about the marker: the first page, or the same marker again
            # The marker's backup is gone (deleted between two pages: retention reaching
            # the oldest backups, which a listing newest-first reaches last). Go back a
            # page; if that one's is gone too, to the first page (what was listed is not
            # listed again).
            gone += 1
            refused.add(marker)
            ends = [end for end in ends if end != marker]
            was, marker = marker, (ends[-1] if gone == 1 and ends else None)
            log.warning(
                "discover.marker_gone",
                source=str(source),
                marker=was,
                restart_from=marker or "the first page",
                listed=len(seen),
                error=str(exc),
            )
            continue
        except TransientApiError as exc:
            wait = retry.delay(exc)
            if wait is None:
                raise
            pages_retried += 1
            log.warning(
                "discover.retry",
                source=str(source),
                attempt=retry.failures,
                listed=len(seen),
                wait_s=wait,
                error=str(exc),
            )
            await sleep(wait)
            continue
        if pages_retried:
            log.info("discover.pages_retried", source=str(source), retries=pages_retried)
        return


def list_source(
    client: ItemLister,
    source: Source,
    config: DiscoverConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
) -> AsyncIterator[dict[str, Any]]:
    """Every item of one source once, paged; a page that fails transiently is asked again
    with backoff, from where the listing was (what ``coverage`` lists too)."""
    return _list(client, source, config, _PageRetry(retry or RetryPolicy(), clock), sleep)
