"""Process exit codes: a stable public contract for cron, systemd and CI scripts."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    OK = 0
    """Every pair ended replicated or already replicated."""
    INTERNAL = 1
    """A bug: an unexpected error (reported without a traceback unless --debug)."""
    USAGE = 2
    """Bad flags, config, credentials setup or manifest; nothing was sent."""
    FAILED = 3
    """Some pairs failed permanently (or manifest rows were rejected); `plan`: some rows
    would not be sent; `track`: some copies failed or their record is missing."""
    GAVE_UP = 4
    """Some pairs gave up on transient errors; run `resume` later."""
    THRESHOLD = 5
    """The failure threshold tripped; sending stopped early."""
    INTERRUPTED = 6
    """Interrupted by a signal or stopped by --max-duration; run `resume` to finish.
    `track`: --deadline passed with copies still running; run `track` again later."""
    AUTH = 7
    """The service refused the credentials; fix them before re-running."""
    LEDGER = 8
    """The ledger could not be written (locked by another run, disk full, fsync failed)."""
