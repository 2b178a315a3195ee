"""The two lines that frame a run, as typed records: ``run_started`` and ``run_finished``.

Their fields used to be decided at the call site (``recorder.run_started(**fields)``), so a
misspelt or forgotten field was found by whoever read the ledger. Each record here names
every field, its type and its place in the line; :meth:`RunStarted.fields` and
:meth:`RunFinished.fields` give them in the order the ledger has always had them
(``docs/ledger.md``), so that lines written before and after read alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.ledger.format import StopReason

__all__ = ["ManifestPinFields", "RunFinished", "RunStarted"]


@dataclass(frozen=True, slots=True)
class ManifestPinFields:
    """What ``run_started`` records of the manifest's bytes, for ``resume`` to compare."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    #: The manifest's absolute path; None for a discovered run.
    manifest: str | None
    #: ``manifest`` or ``discover``.
    source: str
    #: The run's settings, secrets left out (``RunSettings.public()``).
    settings: Mapping[str, Any]
    version: str
    retry_failed: bool
    #: Absent from the line when the manifest was not pinned (discovered pairs, a pipe).
    pin: ManifestPinFields | None = None

    def fields(self) -> dict[str, Any]:
        pin = (
            {}
            if self.pin is None
            else {"manifest_size": self.pin.size, "manifest_sha256": self.pin.sha256}
        )
        return {
            "manifest": self.manifest,
            **pin,
            "source": self.source,
            "settings": self.settings,
            "version": self.version,
            "retry_failed": self.retry_failed,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    #: Pairs by result status, and ``unknown`` for those in flight at a stop.
    counts: Mapping[str, int]
    rejected: int
    duplicates: int
    conflicts: int
    already_done: int
    interrupted: bool
    #: Why the run stopped early; None when it ran to the end.
    reason: StopReason | None
    duration_s: float
    exit_code: int
    requests: int
    retries: int
    #: The learned pace per ``endpoint/project`` (empty when not pacing).
    pace: Mapping[str, Mapping[str, float | int | None]]

    def fields(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "already_done": self.already_done,
            "interrupted": self.interrupted,
            "reason": self.reason,
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "requests": self.requests,
            "retries": self.retries,
            "pace": self.pace,
        }
