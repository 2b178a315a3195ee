"""Discovery: list the estate through the API and turn it into replication pairs.

For each *source* (a project in a region) the items are listed with ``GET /checkpoint_items``,
paged with ``limit``/``marker`` and filtered on the server (``status``, ``resource_type``,
``name`` (fuzzy), ``policy_id``, ``start_time``). Each item then meets the destination
*rules* of the config (``[[discover.rules]]``, see :meth:`DiscoverConfig.from_config`);
every rule that matches names destination regions (and projects) for it. A pair is
skipped when the item already has a replica in that region, or one is being made: the
service would refuse it anyway, and a nightly run should send nothing it does not need.

What the item says about its copies, and what discovery makes of it:

==============================================  ==========================================
the item                                         the pair (item, destination region)
==============================================  ==========================================
a ``replication_records`` entry for the region,  skipped: already replicated
status ``success``
... status ``waiting_replicate``/``replicating``  skipped: in progress
(or a word we do not know)
... only ``fail``/``skip`` entries, or none      sent
no ``replication_records`` at all, and           skipped: in progress (the region is not
``extend_info.copy_status`` waiting/copying      known, and a copy in progress blocks it)
a replica itself: ``image_type`` ``replication``  not a source (no pairs) unless
(CBR) or ``extend_info.copy_from`` set (CSBS)    ``include_replicas``
status other than ``available``                  not a source (only available items can be
                                                 replicated)
==============================================  ==========================================

A transient error part way (503, 429, a cut connection) asks that page again with backoff,
from the same marker (:mod:`.listing`); an item is never counted twice.

CBR (``service="cbr"``): the backups of every vault of the source project are listed with
``GET /v3/{project}/backups``; each pair also needs the *vault* that receives the copy in its
destination region: a rule's ``to`` entry may name it (``vault_id``), else
``[discover.cbr] destination_vaults = { "cn-east-2" = "<vault id>" }`` does. A destination
region with neither is refused before anything is listed.

The configuration is in :mod:`.rules`, listing in :mod:`.listing`, an item's copies in
:mod:`.item`, the pairs in :mod:`.pairs`, ``select = "newest"`` in :mod:`.select` and
the manifest written in :mod:`.manifest_out`.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import structlog

from orchestrator.discovery.listing import ItemLister, Sleep, list_source
from orchestrator.discovery.pairs import SourceSummary, pairs_of
from orchestrator.discovery.rules import DiscoverConfig
from orchestrator.discovery.select import Newest
from orchestrator.engine.retry import RetryPolicy
from orchestrator.models import ReplicationTask
from orchestrator.safe_text import for_terminal, is_uuid
from orchestrator.service.records import RecordReader

__all__ = ["Discovery", "discover"]

log = structlog.get_logger("orchestrator.discovery.discover")


@dataclass(slots=True)
class Discovery:
    tasks: list[ReplicationTask]
    summaries: list[SourceSummary]


async def discover(
    client: ItemLister,
    config: DiscoverConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = anyio.sleep,
) -> Discovery:
    """List every source and apply the rules; the pairs worth sending, and counts."""
    config.check()
    tasks: list[ReplicationTask] = []
    summaries: list[SourceSummary] = []
    seen_pairs: set[tuple[str, str, str]] = set()
    reader = RecordReader()
    newest = Newest() if config.select == "newest" else None
    for source in dict.fromkeys(config.sources):  # each source once, in order
        summary = SourceSummary(source)
        async for item in list_source(client, source, config, retry=retry, sleep=sleep):
            summary.listed += 1
            if not is_uuid(item["id"]):
                # The id goes into a manifest and back into a URL: only the service's own
                # UUID form is trusted; anything else (a formula, escape codes) is skipped.
                summary.invalid_ids += 1
                log.warning(
                    "discover.invalid_id", source=str(source), item_id=for_terminal(item["id"], 80)
                )
                continue
            if newest is not None:
                newest.add(item, source, config, summary, reader)
                continue
            for task in pairs_of(item, source, config, summary, reader):
                if task.key not in seen_pairs:
                    seen_pairs.add(task.key)
                    tasks.append(task)
                    summary.pairs += 1
        if newest is None:
            log.info("discover.source", source=str(source), **_counts(summary))
        summaries.append(summary)
    if newest is not None:
        tasks = newest.tasks({s.source: s for s in summaries})
        for summary in summaries:
            log.info("discover.source", source=str(summary.source), **_counts(summary))
    return Discovery(tasks, summaries)


def _counts(summary: SourceSummary) -> dict[str, int]:
    return {
        "listed": summary.listed,
        "matched": summary.matched,
        "replicated": summary.replicated,
        "in_progress": summary.in_progress,
        "superseded": summary.superseded,
        "pairs": summary.pairs,
    }
