"""SIGKILL while a snapshot is being saved and while a torn ledger is being repaired.

A child process does one of these in a loop over a real ledger, and is killed at a seeded
random moment, many times over. After every kill the ledger must read, fold exactly as its
complete lines do (the snapshot, if one is left, must be the old one, the new one, or
refused), and the next writer's open must leave a clean ledger. Slow: ``CSBS_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from orchestrator.ledger.file import iter_records
from orchestrator.ledger.history import History
from orchestrator.ledger.opening import open_locked
from orchestrator.ledger.snapshot import snapshot_path
from tests.helpers.ledgerlines import RID, attempt, result
from tests.ledger.test_props_ledger import complete_lines, fold_of_lines, observe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CSBS_SLOW_TESTS") != "1", reason="set CSBS_SLOW_TESTS=1"),
]

KILLS = 60

# The child: grow the ledger by whole lines, save its snapshot, again and again.
_SAVER = """
import sys, orjson
from orchestrator.ledger.history import History
from tests.helpers.ledgerlines import attempt, result, RID
path = sys.argv[1]
n = 0
print("ready", flush=True)
while True:
    with open(path, "ab") as f:
        for _ in range(200):
            n += 1
            f.write(orjson.dumps(attempt(n % 5000)) + b"\\n")
            f.write(orjson.dumps(result(n % 5000, "replicated", RID)) + b"\\n")
    History.load(path, record_ids=False).save_snapshot(path)
"""

# The child: tear the ledger's tail as a crash would, then open it as the next writer does
# (which cuts the torn line), again and again.
_REPAIRER = """
import os, sys, orjson
from orchestrator.ledger.opening import open_locked
from tests.helpers.ledgerlines import attempt
path = sys.argv[1]
n = 0
print("ready", flush=True)
while True:
    n += 1
    line = orjson.dumps(attempt(n % 5000)) + b"\\n"
    with open(path, "ab") as f:
        f.write(line * 50 + line[: n % (len(line) - 1) + 1])
    fd, _ = open_locked(path, fsync=True)
    os.close(fd)
"""


def _seed_ledger(path: Path, lines: int) -> None:
    with path.open("wb") as f:
        for n in range(lines // 2):
            f.write(orjson.dumps(attempt(n)) + b"\n")
            f.write(orjson.dumps(result(n, "replicated", RID)) + b"\n")


def _kill_at_random(script: str, ledger: Path, rng: random.Random) -> None:
    root = Path(__file__).parents[2]  # the repository: `tests.helpers` imports from there
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and inline script
        [sys.executable, "-c", script, str(ledger)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n", proc.communicate()[1]
    time.sleep(rng.random() * 0.3)  # somewhere in the loop: the kill point
    assert proc.poll() is None, proc.communicate()[1]
    proc.kill()
    proc.wait()


def _check(ledger: Path) -> None:
    lines = complete_lines(ledger.read_bytes())
    expected = fold_of_lines(lines, with_ids=False)
    assert observe(History.load(ledger, record_ids=False), with_ids=False) == expected
    fd, _ = open_locked(os.fspath(ledger), fsync=False)  # the next run's open
    os.close(fd)
    assert sum(1 for _ in iter_records(ledger)) == len(lines)
    assert observe(History.load(ledger, record_ids=False), with_ids=False) == expected


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_while_a_snapshot_is_saved(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ledger = tmp_path / "ledger.jsonl"
    _seed_ledger(ledger, 10_000)
    killed_mid_save = 0
    for _ in range(KILLS // 2):
        _kill_at_random(_SAVER, ledger, rng)
        # What a killed save leaves: at most its temporary file, removed by the next save.
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(leftovers) <= 1
        killed_mid_save += len(leftovers)
        _check(ledger)
    assert Path(snapshot_path(ledger)).exists()
    assert killed_mid_save > 0, "no kill landed while a snapshot was being written"


@pytest.mark.parametrize("seed", [3, 4])
def test_sigkill_while_a_torn_ledger_is_repaired(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ledger = tmp_path / "ledger.jsonl"
    _seed_ledger(ledger, 2_000)
    for _ in range(KILLS // 2):
        _kill_at_random(_REPAIRER, ledger, rng)
        _check(ledger)
