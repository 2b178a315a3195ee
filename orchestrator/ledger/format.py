"""The ledger's vocabulary in one place: its schema version, event names and stop reasons.

A ledger line is a JSON object with ``v`` (the schema version) and ``event``. Every word a
line may carry that a reader decides on is an enum here, so that adding one is a change in
this module that the type checker carries to every reader. The enums are ``StrEnum``: they
are written as, and compare equal to, the plain strings of the ledger (a public contract
read with ``jq``).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["SCHEMA_VERSION", "LedgerEvent", "StopReason"]

#: The version every line is written with; a reader refuses a newer one.
SCHEMA_VERSION: Final = 1


class LedgerEvent(enum.StrEnum):
    """The ``event`` field of a ledger line."""

    RUN_STARTED = "run_started"
    ATTEMPT = "attempt"
    RESULT = "result"
    RUN_FINISHED = "run_finished"
    COPY_STATUS = "copy_status"


class StopReason(enum.StrEnum):
    """Why a run stopped before its work was done: ``run_finished``'s ``reason``.

    A run that did all its work has no reason (``null``)."""

    SIGNAL = "signal"  # SIGINT/SIGTERM: resume finishes the work
    DEADLINE = "deadline"  # --max-duration passed: resume finishes the work
    THRESHOLD = "threshold"  # too many pairs failed
    AUTH = "auth"  # the service refused our credentials
    UNREACHABLE = "unreachable"  # no request could connect to the service
    MANIFEST_CHANGED = "manifest_changed"  # the manifest's bytes changed under the run

    @property
    def interrupted(self) -> bool:
        """Stopped from outside the work itself (``run_finished``'s ``interrupted``)."""
        return self in (StopReason.SIGNAL, StopReason.DEADLINE, StopReason.MANIFEST_CHANGED)
