"""What survives a restart (``schedule-state.json``) and the firing lock (``schedule.lock``).

A firing holds ``<state_dir>/schedule.lock`` (``flock``) while its job runs; the last
fired scheduled time is persisted in ``<state_dir>/schedule-state.json``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.atomic_file import replace_file
from orchestrator.errors import ScheduleError
from orchestrator.safe_file import open_or_create, open_regular
from orchestrator.safe_text import for_terminal
from orchestrator.scheduling.clock import require_aware

__all__ = [
    "LOCK_FILE_NAME",
    "STATE_FILE_NAME",
    "FiringLock",
    "ScheduleState",
    "StateFile",
    "lock_holder",
    "make_dir",
]

STATE_FILE_NAME = "schedule-state.json"
LOCK_FILE_NAME = "schedule.lock"
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What survives a restart: the last scheduled time that fired, and how it ended.

    ``last_finished`` is None while that firing runs, or when it was interrupted.
    """

    last_scheduled: datetime
    last_started: datetime
    last_finished: datetime | None = None
    last_exit_code: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "version": _STATE_VERSION,
            "last_scheduled": self.last_scheduled.isoformat(),
            "last_started": self.last_started.isoformat(),
            "last_finished": None if self.last_finished is None else self.last_finished.isoformat(),
            "last_exit_code": self.last_exit_code,
        }

    @classmethod
    def from_json(cls, data: object) -> ScheduleState:
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise ValueError(f"not a version {_STATE_VERSION} schedule state")
        finished = data.get("last_finished")
        code = data.get("last_exit_code")
        if code is not None and not isinstance(code, int):
            raise ValueError("last_exit_code is not an integer")
        return cls(
            last_scheduled=_parse_instant(data["last_scheduled"]),
            last_started=_parse_instant(data["last_started"]),
            last_finished=None if finished is None else _parse_instant(finished),
            last_exit_code=code,
        )


def _parse_instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a timestamp")
    return require_aware(datetime.fromisoformat(value), "timestamp")


@dataclass(frozen=True, slots=True)
class StateFile:
    """The JSON state file, replaced atomically (write temp, fsync, rename, fsync dir)."""

    path: Path

    def load(self) -> ScheduleState | None:
        try:
            # The state directory is untrusted: no symlink, no FIFO (it would block for good).
            with os.fdopen(open_regular(self.path, os.O_RDONLY), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScheduleError(
                f"schedule state {self.path}: cannot read: {exc.strerror or exc}"
            ) from exc
        try:
            return ScheduleState.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise ScheduleError(
                f"schedule state {self.path}: unreadable ({exc}); delete it to start afresh "
                "(firings missed before the restart are then not detected)"
            ) from exc

    def save(self, state: ScheduleState) -> None:
        data = json.dumps(state.to_json(), indent=2).encode() + b"\n"
        try:
            replace_file(self.path, data)
        except OSError as exc:
            raise ScheduleError(f"schedule state {self.path}: cannot write: {exc}") from exc


class FiringLock:
    """An exclusive ``flock`` on the lock file, held for the length of one firing.

    flock locks belong to the open file description, so a second open of the file in
    this very process conflicts too: one mechanism covers both kinds of overlap.
    """

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path, note: str) -> FiringLock | None:
        try:
            # A symlink planted here would make us truncate and write the file it names.
            fd, _ = open_or_create(path, os.O_RDWR)
        except OSError as exc:
            raise ScheduleError(f"schedule lock {path}: cannot open: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise ScheduleError(f"schedule lock {path}: cannot lock: {exc}") from exc
        # Who holds it, for the skip report of whoever finds it held. Diagnostic only.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock


def lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as handle:
            note = for_terminal(handle.read(200).decode(errors="replace").strip(), 200)
        if note:
            return note
    return "unknown holder"


def make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScheduleError(f"schedule state dir {directory}: {exc}") from exc
