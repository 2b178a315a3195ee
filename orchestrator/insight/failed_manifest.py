"""``report --failed-manifest``: the pairs worth sending again, as a manifest ``run`` accepts."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.atomic_file import replace_file
from orchestrator.errors import ConfigError
from orchestrator.insight.report_fold import scan
from orchestrator.insight.report_model import (
    CBR_MANIFEST_HEADER,
    COPY_FAILED,
    MANIFEST_HEADER,
    STATUS_ORDER,
    RunSelector,
)
from orchestrator.models import FINAL_SUCCESS
from orchestrator.safe_text import csv_row

__all__ = ["check_include", "write_failed_manifest"]

_SUCCESS = frozenset(str(status) for status in FINAL_SUCCESS)
_INCLUDABLE = frozenset(STATUS_ORDER) - _SUCCESS | {COPY_FAILED}


def check_include(include: Iterable[str]) -> frozenset[str]:
    """The statuses ``--include`` names, or :class:`ConfigError` naming the unknown ones."""
    wanted = frozenset(include)
    unknown = wanted - _INCLUDABLE
    if unknown:
        raise ConfigError(
            f"--include: cannot include {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(sorted(_INCLUDABLE))}"
        )
    return wanted


def write_failed_manifest(
    records: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    run: RunSelector = "last",
    include: Iterable[str] = ("failed", "gave_up"),
) -> int:
    """Write the pairs of the selected runs whose latest state is in ``include`` as a CSV
    manifest (:data:`MANIFEST_HEADER`) that ``run --manifest`` accepts; return how many.

    ``include`` takes result statuses (``failed``, ``gave_up``, ``rejected``, ``unknown``) and
    ``copy_failed`` (the replicate call succeeded but the latest copy state is ``failed`` or
    ``skipped``: the service's ``fail`` or ``skip``).
    A pair whose latest result anywhere in the ledger is a success is left out, and so are
    rejected rows that lack an id. The file is replaced atomically.
    """
    wanted = check_include(include)
    rows = list(scan(records, run, wanted).tally.rows.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    cbr = bool(rows) and len(rows[0]) == len(CBR_MANIFEST_HEADER)
    writer.writerow(CBR_MANIFEST_HEADER if cbr else MANIFEST_HEADER)
    # Ids and names come from the ledger, so from the service or a manifest: a spreadsheet
    # must not run them as formulas. (A neutralised id is no UUID: `run` then rejects it.)
    writer.writerows(csv_row(row) for row in rows)
    try:
        replace_file(path, buffer.getvalue().encode())  # 0600, like every file the tool writes
    except OSError as exc:
        # A missing folder or a directory in the way is the operator's to fix: say which file.
        raise ConfigError(
            f"{os.fspath(path)}: cannot write the failed manifest: {exc.strerror or exc}"
        ) from None
    return len(rows)
