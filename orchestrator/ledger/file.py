"""The run ledger: an append-only JSON Lines file with one writer and group-committed fsync.

The ledger is the run's memory: ``resume`` and ``plan`` read it to know which pairs are done,
``report`` summarises it, and an ``attempt`` line made durable *before* a replicate request
is sent is what lets a crashed run tell "never sent" from "outcome unknown".

Schema, version 1
=================

Every line is one JSON object (UTF-8, no blank lines) with these common fields:

==========  =================================================================
``v``       schema version, ``1``
``event``   ``run_started``, ``attempt``, ``result``, ``run_finished`` or
            ``copy_status``
``ts``      when the line was written: ISO-8601 UTC with microseconds,
            ``2025-01-31T23:59:59.123456+00:00``
``run_id``  the run that wrote the line
==========  =================================================================

A *pair* is (``project_id``, ``checkpoint_item_id``, ``destination_region``): the source
project, the backup, the region it is copied to. A CBR run (``settings.service`` ``"cbr"``)
writes ``backup_id`` in place of ``checkpoint_item_id`` and adds ``destination_vault_id``
after ``destination_project_id`` on its ``attempt``, ``result`` and ``copy_status`` lines;
readers take either id. Event-specific fields:

``run_started``
    ``manifest`` (absolute path, or null when tasks were discovered), ``source``
    (``"manifest"`` or ``"discover"``), ``settings`` (the effective settings, never a
    secret), ``version`` (of csbs-orchestrator).
``attempt``
    ``project_id``, ``checkpoint_item_id``, ``destination_region``,
    ``destination_project_id``, ``attempt`` (1-based). Written and made durable *before* the
    replicate request is sent: a pair whose last ``attempt`` has no later ``result`` has an
    unknown outcome and is reconciled with the service before any resend.
``result``
    the pair's final outcome in this run: ``checkpoint_item_id``, ``project_id``,
    ``source_region``, ``destination_region``, ``destination_project_id``, ``status``
    (``replicated``, ``already_replicated``, ``failed``, ``gave_up`` or ``rejected``),
    ``replication_record_id``, ``http_status``, ``error_code``, ``error_msg``,
    ``attempts``, ``started_at``, ``finished_at`` (ISO-8601 UTC), ``duration_s``,
    ``manifest_line``; and ``outcome_unknown: true`` on a ``gave_up`` whose last request
    may have been applied (cut after sending, never reconciled): like an attempt without a
    result, the next run asks the service before it sends that pair again. A ``rejected``
    line is a manifest row that failed validation; it also
    carries ``manifest`` (path) and ``field`` (the bad field, or null), and its ids may be
    null.
``run_finished``
    ``counts`` (``{status: n}``), ``duplicates``, ``conflicts``, ``interrupted`` (bool),
    ``reason`` (null, ``"signal"``, ``"deadline"``, ``"threshold"``, ``"auth"`` or
    ``"unreachable"``), ``duration_s``, ``exit_code``, ``requests``, ``retries``.
``copy_status``
    written by ``track``: the pair's fields, ``replication_record_id``, ``copy_status`` (the
    service's own word: a record's ``waiting_replicate``, ``replicating``, ``success``,
    ``fail``, ``skip``, or an item's ``waiting_copy``, ``copying``), ``state`` (what the word
    means: ``running``, ``success``, ``failed`` or ``skipped``; absent in older ledgers,
    where it follows from ``copy_status``) and ``progress`` (0-100).

Readers ignore fields they do not know; a line with a ``v`` above 1 is refused. A run
writes its ``attempt`` and ``result`` lines *compact* (no ``run_id``, ``t`` for ``ts``,
repeated fields and defaults left out): :class:`LedgerReader` gives them back verbose, see
:mod:`orchestrator.ledger.compact`.

This module is the ledger's public face: the rest of the tool and the tests import the
reader, the writer and :func:`last_record` from here; the modules of this folder import
them from where they are defined. The modules: :mod:`~orchestrator.ledger.writer`
(:class:`LedgerWriter`: append, lock, group-committed fsync),
:mod:`~orchestrator.ledger.torn_tail` (a line a crash tore, cut when the ledger is next
opened for writing), :mod:`~orchestrator.ledger.reader` (:func:`iter_records`,
:class:`LedgerReader`) and :mod:`~orchestrator.ledger.last_record` (the last line of one
event, read backwards).
"""

from __future__ import annotations

from orchestrator.ledger.last_record import last_record
from orchestrator.ledger.reader import LedgerReader, iter_records
from orchestrator.ledger.writer import LedgerWriter, LineBatch

__all__ = [
    "LedgerReader",
    "LedgerWriter",
    "LineBatch",
    "iter_records",
    "last_record",
]
