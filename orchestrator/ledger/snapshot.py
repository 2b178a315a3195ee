"""The ledger's fold saved beside it, so that loading a long ledger replays only its tail.

``<ledger>.snapshot`` holds what :class:`~orchestrator.ledger.history.History` knows after folding
the ledger's first ``end`` bytes: the pair map, the numbering of (project, region)
combinations and the counters. Folding a million lines takes seconds, most of it parsing
JSON; reading the snapshot back takes a fraction of one, and only the lines after ``end``
are parsed.

The snapshot is a cache: whenever it is absent, unreadable, written by another version or
does not describe this ledger, the whole ledger is folded instead. It describes the ledger
when the file is the same one (its inode: rewriting a ledger with an editor or ``sed -i``
makes a new file), is at least ``end`` bytes long, and its first and last mebibyte before
``end`` hash to what they did. Not the device number: a volume mounted again (every pod of
a Kubernetes CronJob, an NFS remount, a reboot) may get another one for the same file.
The ledger is append-only, so these bounded checks stand in for hashing the whole prefix,
which would make loading grow with the ledger again. Whoever edits a ledger in place by
hand should delete the snapshot.

Format, version 2 (version 1, without the newer copy-status codes, still reads): the line
``csbs-orchestrator history snapshot\\n``, one JSON header line,
then per key length the keys (concatenated) and their packed states (little-endian
unsigned 64-bit). The header holds a SHA-256 of that body; a snapshot is written to a
temporary file, fsynced and renamed over the old one, so a reader sees either.
"""

from __future__ import annotations

import array
import glob
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

from orchestrator.atomic_file import replace_file
from orchestrator.errors import LedgerError
from orchestrator.safe_file import open_regular

__all__ = ["SavedFold", "load_snapshot", "save_snapshot", "snapshot_path"]

_MAGIC: Final = b"csbs-orchestrator history snapshot\n"
_VERSION: Final = 2
# Version 2 may hold copy-status codes 5-7 (skip, waiting_replicate, replicating) that a
# version-1 reader cannot decode: it must refold instead. Version 1 reads as before.
_READABLE: Final = frozenset({1, 2})
_WINDOW: Final = 1 << 20  # bytes hashed at each end of the covered prefix
_SWAP: Final = sys.byteorder != "little"


@dataclass(slots=True)
class SavedFold:
    """A history's state after folding the ledger's first ``end`` bytes (``lines`` lines)."""

    end: int = 0
    lines: int = 0
    pairs: dict[bytes, int] = field(default_factory=dict)
    combos: list[tuple[str, str]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    last_run_started: dict[str, Any] | None = None
    last_run_finished: dict[str, Any] | None = None


def snapshot_path(ledger: str | os.PathLike[str]) -> str:
    return os.fspath(ledger) + ".snapshot"


def save_snapshot(ledger: str | os.PathLike[str], fold: SavedFold) -> int:
    """Write the snapshot of ``fold`` beside ``ledger``, atomically; returns its size. Call
    it holding the ledger's lock (a run does), so that saves never overlap.

    Raises LedgerError when the ledger is shorter than the fold says (cut by hand since it
    was read), OSError on a failed read or write."""
    sections, body = _encode_pairs(fold.pairs)
    with _open_read(ledger, follow=True) as f:
        try:
            identity = _identity(f.fileno(), fold.end)
        except _Unusable as exc:
            raise LedgerError(f"{os.fspath(ledger)}: not saving a snapshot: {exc}") from None
    header = {
        "v": _VERSION,
        "ledger": identity,
        "lines": fold.lines,
        "combos": fold.combos,
        "counters": fold.counters,
        "last_run_started": fold.last_run_started,
        "last_run_finished": fold.last_run_finished,
        "sections": sections,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    data = _MAGIC + orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE) + body
    target = Path(snapshot_path(ledger))
    _remove_stale_temporaries(target)
    replace_file(target, data)
    return len(data)


def _open_read(path: str | os.PathLike[str], *, follow: bool) -> BinaryIO:
    return os.fdopen(open_regular(path, os.O_RDONLY, follow=follow), "rb")


def _remove_stale_temporaries(target: Path) -> None:
    """Delete what a save killed midway left (``replace_file``'s temporary files). Saves run
    under the ledger's lock, so no other save can be writing one now."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def load_snapshot(ledger: str | os.PathLike[str]) -> tuple[SavedFold | None, str]:
    """The saved fold of ``ledger``, or None and why it cannot be used."""
    try:
        # Beside the ledger, perhaps in a directory others write: no symlink, no FIFO.
        with _open_read(snapshot_path(ledger), follow=False) as f:
            data = f.read()
    except FileNotFoundError:
        return None, "no snapshot"
    except OSError as exc:
        return None, f"snapshot unreadable: {exc.strerror or exc}"
    try:
        header, body = _parse(data)
        fold = _decode(header, body)
        with _open_read(ledger, follow=True) as f:
            if header["ledger"] != _identity(f.fileno(), fold.end):
                return None, "the ledger is not the one the snapshot describes"
    except _Unusable as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"the ledger does not match the snapshot: {exc.strerror or exc}"
    return fold, "snapshot"


class _Unusable(Exception):
    """The snapshot cannot be used (a cache miss, not an error)."""


def _identity(fd: int, end: int) -> dict[str, Any]:
    """What must not change for the ledger's first ``end`` bytes to be the ones folded."""
    stat = os.fstat(fd)
    if stat.st_size < end:
        raise _Unusable(f"the ledger is shorter ({stat.st_size} bytes) than the snapshot ({end})")
    head = os.pread(fd, min(end, _WINDOW), 0)
    tail_start = max(0, end - _WINDOW)
    tail = os.pread(fd, end - tail_start, tail_start)
    return {
        "ino": stat.st_ino,
        "end": end,
        "head_sha256": hashlib.sha256(head).hexdigest(),
        "tail_sha256": hashlib.sha256(tail).hexdigest(),
    }


def _encode_pairs(pairs: Mapping[bytes, int]) -> tuple[list[list[int]], bytes]:
    """The pair map as sections of one key length each: [[key length, count], ...] and the
    body (keys, then states, per section)."""
    groups: dict[int, tuple[list[bytes], array.array[int]]] = {}
    lengths = set(map(len, pairs))
    if len(lengths) == 1:  # the usual case: every item id a UUID, few combinations
        groups[lengths.pop()] = (list(pairs), array.array("Q", pairs.values()))
    else:
        for key, state in pairs.items():
            group = groups.get(len(key))
            if group is None:
                group = groups[len(key)] = ([], array.array("Q"))
            group[0].append(key)
            group[1].append(state)
    sections: list[list[int]] = []
    parts: list[bytes] = []
    for length, (keys, states) in sorted(groups.items()):
        if _SWAP:
            states.byteswap()
        sections.append([length, len(keys)])
        parts += (b"".join(keys), states.tobytes())
    return sections, b"".join(parts)


def _parse(data: bytes) -> tuple[dict[str, Any], memoryview]:
    if not data.startswith(_MAGIC):
        raise _Unusable("not a history snapshot")
    newline = data.find(b"\n", len(_MAGIC))
    try:
        header = orjson.loads(data[len(_MAGIC) : newline])
    except orjson.JSONDecodeError:
        raise _Unusable("snapshot header unreadable") from None
    if type(header) is not dict or header.get("v") not in _READABLE:
        raise _Unusable("snapshot of another format version")
    body = memoryview(data)[newline + 1 :]
    if hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        raise _Unusable("snapshot damaged (its checksum does not match)")
    return header, body


def _decode(header: dict[str, Any], body: memoryview) -> SavedFold:
    try:
        pairs: dict[bytes, int] = {}
        offset = 0
        for length, count in header["sections"]:
            keys = bytes(body[offset : offset + length * count])
            offset += length * count
            states = array.array("Q")
            states.frombytes(body[offset : offset + 8 * count])
            offset += 8 * count
            if _SWAP:
                states.byteswap()
            cuts = range(0, length * count, length)
            pairs.update(zip([keys[i : i + length] for i in cuts], states.tolist(), strict=True))
        if offset != len(body):
            raise _Unusable("snapshot malformed (its body is longer than its sections)")
        return SavedFold(
            end=int(header["ledger"]["end"]),
            lines=int(header["lines"]),
            pairs=pairs,
            combos=[(str(p), str(r)) for p, r in header["combos"]],
            counters={str(k): int(v) for k, v in header["counters"].items()},
            last_run_started=header["last_run_started"],
            last_run_finished=header["last_run_finished"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _Unusable(f"snapshot malformed ({exc})") from None
