"""The stop reasons documented in docs/ledger.md are exactly the ones the code writes, each
with the exit code the documentation gives it (the list had drifted once: it named an
"error" reason never written and left out "unreachable")."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from orchestrator.engine.job_spec import exit_code_for
from orchestrator.engine.pool_types import PoolStats
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.format import StopReason

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| `(\w+)` \| [^|]+ \| (true|false) \| (\d) \|$")


def documented() -> dict[str, int]:
    """`reason` -> exit code, from the table under '## Stop reasons'."""
    text = (ROOT / "docs" / "ledger.md").read_text(encoding="utf-8")
    section = text.split("## Stop reasons", 1)[1].split("\n## ", 1)[0]
    rows = (_ROW.match(line) for line in section.splitlines())
    return {m.group(1): int(m.group(3)) for m in rows if m}


def test_the_documented_stop_reasons_are_the_ones_written() -> None:
    """request_stop takes a StopReason, so the enum is every reason a ledger can hold."""
    assert set(documented()) == {str(reason) for reason in StopReason}


def test_the_documented_interrupted_flag_is_the_written_one() -> None:
    text = (ROOT / "docs" / "ledger.md").read_text(encoding="utf-8")
    section = text.split("## Stop reasons", 1)[1].split("\n## ", 1)[0]
    rows = [m for m in map(_ROW.match, section.splitlines()) if m]
    for m in rows:
        assert StopReason(m.group(1)).interrupted == (m.group(2) == "true"), m.group(1)


def test_each_stop_reason_ends_the_run_with_its_documented_exit_code() -> None:
    for reason, code in documented().items():
        stats = PoolStats(counts=Counter(), stop_reason=StopReason(reason))
        assert exit_code_for(stats, rejected=0) == ExitCode(code), reason
