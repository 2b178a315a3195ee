"""Dated ledgers: the name a firing's ledger gets, and pruning the old ones."""

from __future__ import annotations

import fcntl
import os
import re
from datetime import UTC
from pathlib import Path

from orchestrator.errors import ConfigError, ScheduleError
from orchestrator.ledger.archive import compress_closed
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.safe_file import NotRegularFileError, open_regular
from orchestrator.scheduling.firing import Firing

__all__ = ["ledger_path_for", "prune_ledgers"]

_LEDGER_NAME = re.compile(r"^ledger-\d{8}T\d{4}Z\.jsonl$")


def ledger_path_for(firing: Firing, directory: Path) -> Path:
    """``<directory>/ledger-YYYYMMDDTHHMMZ.jsonl``, stamped with the scheduled time in UTC.

    UTC keeps names unique and sortable across DST changes; a catch-up firing reuses the
    name of the scheduled time it stands for.
    """
    return directory / f"ledger-{firing.scheduled.astimezone(UTC):%Y%m%dT%H%MZ}.jsonl"


def prune_ledgers(directory: Path, keep: int, *, in_use: Path | None = None) -> list[Path]:
    """Delete dated ledgers beyond the newest ``keep`` (by name), each with its history
    snapshot; return the ledgers deleted.

    Never deletes ``in_use``, nor a ledger another process holds locked; files that do not
    look like dated ledgers are left alone.
    """
    if keep < 1:
        raise ConfigError(f"schedule keep_ledgers {keep}: must be at least 1")
    try:
        names = sorted((p for p in directory.iterdir() if _LEDGER_NAME.match(p.name)), reverse=True)
    except OSError as exc:
        raise ScheduleError(f"ledger directory {directory}: cannot list: {exc}") from exc
    removed: list[Path] = []
    for path in names[keep:]:
        if in_use is not None and _same_file(path, in_use):
            continue
        if _unlink_unless_locked(path):
            removed.append(path)
    return removed + compress_closed(directory, keep, in_use=in_use)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def _unlink_unless_locked(path: Path) -> bool:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (FileNotFoundError, NotRegularFileError):
        return False  # gone, or a symlink/FIFO planted there: not ours to follow or delete
    except OSError as exc:
        raise ScheduleError(f"ledger {path}: cannot open for pruning: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a run or a resume is writing it
        try:
            path.unlink()
            # Under the same lock: a run of this ledger would be the one to write it.
            Path(snapshot_path(path)).unlink(missing_ok=True)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ScheduleError(f"ledger {path}: cannot delete: {exc}") from exc
        return True
    finally:
        os.close(fd)
