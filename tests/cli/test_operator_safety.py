"""Issue 16: the everyday mistakes of an operator, each met through the CLI (``main(argv)`` in
this process) against a simulator served from its own thread.

A manifest rewritten or truncated during a run, a changed manifest on resume, config typos,
a wrong key, an endpoint with a path, an empty manifest, records that pre-date the run,
counts that disagree, ledgers that are not ledgers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.engine import manifest_pin
from orchestrator.engine.plan import Plan
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

FAST_CONFIG = """
[retry]
base_delay = 0.001
max_delay = 0.01
max_attempts = 20
budget_percent = 100
[run]
grace_period = 5
"""
#: A valid destination project that no row of the original manifest names.
FOREIGN_PROJECT = "f" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "CSBS_AUTH_TOKEN",
        "CSBS_IAM_PASSWORD",
        "CSBS_IAM_USER",
        "CSBS_ENDPOINT",
        "CSBS_CONCURRENCY",
        "CSBS_RATE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=60, seed=3) as served:
        yield served


# -- helpers ----------------------------------------------------------------------------------


def fresh_rows(sim: Simulator, count: int | None = None) -> list[dict[str, str]]:
    rows = [
        row
        for row in estate_rows(sim.state)
        if sim.state.latest_record(row["checkpoint_item_id"], row["destination_region"]) is None
    ]
    return rows[:count]


def write_rows(path: Path, rows: list[dict[str, str]], *, pad: int = 0) -> Path:
    """A CSV manifest; ``pad`` characters of name per row make the file outgrow a read buffer."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*MANIFEST_COLUMNS, "name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows([dict(row, name="n" * pad) if pad else row for row in rows])
    return path


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(FAST_CONFIG + extra, encoding="utf-8")
    return path


def run_argv(sim: Simulator, tmp_path: Path, manifest: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--manifest",
        str(manifest),
        "--ledger",
        str(tmp_path / "ledger.jsonl"),
        "--endpoint",
        sim.base_url,
        "--config",
        str(config_file(tmp_path)),
        "--no-progress",
        "--log-format",
        "json",
        *extra,
    ]


def resume_argv(sim: Simulator, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "resume",
        "--ledger",
        str(tmp_path / "ledger.jsonl"),
        "--endpoint",
        sim.base_url,
        "--config",
        str(config_file(tmp_path)),
        "--no-progress",
        "--log-format",
        "json",
        *extra,
    ]


def records(ledger: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in iter_records(ledger) if r["event"] == event]


def change_manifest_after(
    monkeypatch: pytest.MonkeyPatch, items: int, change: Any, *, block_lines: int = 4
) -> None:
    """Once pass two has handed out ``items`` work items, ``change()`` the manifest file.

    Blocks of a few lines make the pin check often; the padded manifest outgrows the read
    buffer, so the reader really meets the new bytes."""
    monkeypatch.setattr(manifest_pin, "PIN_BLOCK_LINES", block_lines)
    original = Plan.work

    def work(self: Plan) -> Iterator[Any]:
        for count, item in enumerate(original(self), 1):
            yield item
            if count == items:
                change()

    monkeypatch.setattr(Plan, "work", work)


# -- 1. the manifest is pinned ----------------------------------------------------------------


def test_a_manifest_rewritten_during_a_run_never_sends_a_row_pass_one_did_not_validate(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim)
    assert len(rows) >= 30
    manifest = write_rows(tmp_path / "m.csv", rows, pad=200)
    rewritten = [dict(row, destination_project_id=FOREIGN_PROJECT) for row in rows]
    change_manifest_after(monkeypatch, 5, lambda: write_rows(manifest, rewritten, pad=200))
    code = main(run_argv(sim, tmp_path, manifest, "--concurrency", "1", "--per-region", "1"))
    err = capfd.readouterr().err
    ledger = tmp_path / "ledger.jsonl"
    sent = records(ledger, "attempt")
    assert "manifest.changed" in err
    assert all(r["destination_project_id"] != FOREIGN_PROJECT for r in sent)
    pairs = [(r["checkpoint_item_id"], r["destination_region"]) for r in records(ledger, "result")]
    assert len(pairs) == len(set(pairs)), "a pair was sent twice"
    (finished,) = records(ledger, "run_finished")
    assert finished["reason"] == "manifest_changed"
    assert code == ExitCode.INTERRUPTED
    assert finished["exit_code"] == ExitCode.INTERRUPTED


def test_a_manifest_truncated_during_a_run_stops_with_run_finished(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim)
    manifest = write_rows(tmp_path / "m.csv", rows, pad=200)
    change_manifest_after(monkeypatch, 5, lambda: write_rows(manifest, rows[:8], pad=200))
    code = main(run_argv(sim, tmp_path, manifest))
    out, err = capfd.readouterr()
    assert code == ExitCode.INTERRUPTED, err
    (finished,) = records(tmp_path / "ledger.jsonl", "run_finished")
    assert finished["reason"] == "manifest_changed"
    assert "manifest changed" in out


def test_run_started_records_the_manifest_size_and_sha256(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    (started,) = records(tmp_path / "ledger.jsonl", "run_started")
    data = manifest.read_bytes()
    assert started["manifest_size"] == len(data)
    assert started["manifest_sha256"] == hashlib.sha256(data).hexdigest()


def test_resume_refuses_a_changed_manifest_unless_told_to_replan(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 4)
    manifest = write_rows(tmp_path / "m.csv", rows[:3])
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    write_rows(manifest, rows)  # one more row
    capfd.readouterr()
    assert main(resume_argv(sim, tmp_path)) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert "--replan" in err
    assert len(records(tmp_path / "ledger.jsonl", "run_started")) == 1  # nothing recorded
    assert main(resume_argv(sim, tmp_path, "--replan")) == ExitCode.OK
    assert len(records(tmp_path / "ledger.jsonl", "result")) == 4


def test_resume_of_an_unchanged_manifest_needs_no_flag(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    manifest.touch()  # a new modification time, the same bytes
    assert main(resume_argv(sim, tmp_path)) == ExitCode.OK


# -- 2. config typos are errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[limits]\nconcurency = 4\n",
            "[limits] unknown key 'concurency'; did you mean 'concurrency'?",
        ),
        ("[limit]\nconcurrency = 4\n", "unknown section [limit]; did you mean 'limits'?"),
        ("[schedule]\nkeep = 3\n", "[schedule] unknown key 'keep'"),
    ],
)
def test_an_unknown_config_key_or_section_is_refused_naming_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text, encoding="utf-8")
    manifest = tmp_path / "m.csv"
    manifest.write_text("checkpoint_item_id,destination_region,destination_project_id\n")
    argv = ["plan", "--manifest", str(manifest), "--offline", "--config", str(config)]
    assert main(argv) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert expected in err
    assert "valid " in err


def test_a_config_file_that_is_not_utf8_is_a_clear_usage_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b"[limits]\nconcurrency = 4 # caf\xe9\n")
    assert main(["config", "check", "--config", str(config)]) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert "not UTF-8" in err
    assert "internal error" not in err


def test_the_example_config_passes_the_key_check(capfd: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).parents[2] / "configs" / "example.toml"
    assert main(["config", "check", "--config", str(example)]) == ExitCode.OK


def test_config_check_says_where_each_setting_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[limits]\nconcurrency = 4\n", encoding="utf-8")
    monkeypatch.setenv("CSBS_RATE", "5")
    argv = ["config", "check", "--config", str(config), "--per-region", "3", "--json"]
    assert main(argv) == ExitCode.OK
    doc = json.loads(capfd.readouterr().out)
    assert doc["concurrency"] == {"value": 4, "source": f"file {config} [limits.concurrency]"}
    assert doc["per_region"] == {"value": 3, "source": "flag --per-region"}
    assert doc["rate"] == {"value": 5.0, "source": "environment CSBS_RATE"}
    assert doc["max_attempts"] == {"value": 8, "source": "default"}


# -- 3. preflight -----------------------------------------------------------------------------


def test_an_endpoint_with_a_path_is_refused_saying_what_to_use(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
    argv = run_argv(sim, tmp_path, manifest)
    argv[argv.index("--endpoint") + 1] = sim.base_url + "/v1"
    assert main(argv) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert f"no path allowed; use {sim.base_url}" in err
    assert sum(sim.counters.requests.values()) == 0


class _NotCsbs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_csbs() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotCsbs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_answers_like_another_service_is_refused(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    not_csbs: str,
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
    argv = run_argv(sim, tmp_path, manifest)
    argv[argv.index("--endpoint") + 1] = not_csbs
    assert main(argv) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert "does not answer like CSBS" in err
    assert "check --endpoint" in err
    # Refused before run_started: no attempt, and no ledger file at all (docs/running.md).
    assert not (tmp_path / "ledger.jsonl").exists()


# -- 4. every command that talks to the service: exit 4 / 7 / 2, never 1 -------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_track_takes_the_endpoint_from_the_ledger_as_resume_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=20, copy_wait_s=0, copy_duration_s=0) as sim:
        use_sim_credentials(monkeypatch, sim)
        manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
        assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
        sim.advance(60)
        capfd.readouterr()
        ledger = str(tmp_path / "ledger.jsonl")
        code = main(["track", ledger, "--interval", "0", "--log-level", "warning"])
        assert code == ExitCode.OK, capfd.readouterr().err
        assert len(records(tmp_path / "ledger.jsonl", "copy_status")) >= 3
        # The per-pair report carries each pair's latest copy status.
        pairs_csv = tmp_path / "pairs.csv"
        assert main(["report", ledger, "--pairs", str(pairs_csv)]) == ExitCode.OK
        with pairs_csv.open(encoding="utf-8", newline="") as handle:
            got = list(csv.DictReader(handle))
        assert [r["copy_status"] for r in got] == ["success"] * 3


@pytest.mark.parametrize("command", ["plan", "discover", "schedule --once", "track", "resume"])
def test_a_service_never_reached_is_exit_4_soon_for_every_command(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    command: str,
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 3))
    ledger = tmp_path / "ledger.jsonl"
    if command in {"track", "resume"}:  # a ledger with replicated pairs to follow
        assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    project = sim.state.projects[0]
    region = sim.state.capabilities()[project.region][0]
    dest = sim.state.destination_projects[region]
    common = ["--endpoint", closed_port_url(), "--unreachable-after", "0.1"]
    argv = {
        "plan": ["plan", "--manifest", str(manifest)],
        "discover": ["discover", "-o", str(tmp_path / "d.csv"), "--to", f"{region}={dest}"],
        "schedule --once": [
            "schedule",
            "--once",
            "--state-dir",
            str(tmp_path / "state"),
            "--to",
            f"{region}={dest}",
        ],
        "track": ["track", str(ledger), "--interval", "0"],
        "resume": ["resume", "--ledger", str(ledger), "--no-progress", "--replan"],
    }[command]
    if command == "resume":  # one more pair to send than the run had
        argv += ["--manifest", str(write_rows(tmp_path / "more.csv", fresh_rows(sim, 4)))]
    if command in {"discover", "schedule --once"}:
        argv += ["--project-id", project.id, "--region", project.region]
    if command == "track":
        argv += ["--deadline", "5"]
    capfd.readouterr()
    code = main([*argv, *common, "--log-level", "warning"])
    err = capfd.readouterr().err
    assert code == ExitCode.GAVE_UP, err
    assert "service unreachable" in err
    assert "internal error" not in err


# -- 5. nothing to do is said -----------------------------------------------------------------


HEADER_ONLY = "checkpoint_item_id,destination_region,destination_project_id\n"


@pytest.mark.parametrize(
    "case", [("", "run"), (HEADER_ONLY, "run"), ("", "plan"), (HEADER_ONLY, "plan")]
)
def test_an_empty_or_header_only_manifest_is_exit_2_unless_allowed(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    case: tuple[str, str],
) -> None:
    content, command = case
    use_sim_credentials(monkeypatch, sim)
    manifest = tmp_path / "m.csv"
    manifest.write_text(content, encoding="utf-8")
    argv = run_argv(sim, tmp_path, manifest)
    if command == "plan":
        argv = ["plan", "--manifest", str(manifest), "--endpoint", sim.base_url]
    assert main(argv) == ExitCode.USAGE
    assert "no rows" in capfd.readouterr().err
    assert main([*argv, "--allow-empty"]) == ExitCode.OK


# -- 7. one truth for counts ------------------------------------------------------------------


def test_summary_report_and_metrics_agree_on_rejected_and_retries(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    sim.update_faults(p503=0.4)
    rows = fresh_rows(sim, 12)
    invalid = dict(rows[0], checkpoint_item_id="not-a-uuid")
    conflict = dict(rows[1], destination_project_id=FOREIGN_PROJECT)  # two rows, one pair
    manifest = write_rows(tmp_path / "m.csv", [*rows, invalid, conflict])
    metrics = tmp_path / "metrics.prom"
    code = main(run_argv(sim, tmp_path, manifest, "--metrics-file", str(metrics)))
    out = capfd.readouterr().out
    assert code == ExitCode.FAILED, out
    summary_rejected = int(re.search(r"rejected (\d+)", out).group(1))  # type: ignore[union-attr]
    summary_retries = int(re.search(r"(\d+) retries", out).group(1))  # type: ignore[union-attr]
    assert summary_rejected == 3
    assert summary_retries > 0

    ledger = str(tmp_path / "ledger.jsonl")
    assert main(["report", ledger, "--format", "json"]) == ExitCode.OK
    doc = json.loads(capfd.readouterr().out)
    assert doc["totals"]["rejected"] == summary_rejected
    assert len(doc["rejected"]) == summary_rejected
    assert {r["line"] for r in doc["rejected"]} == {3, 14, 15}  # the conflict: 3 and 15
    assert doc["retries"] == summary_retries
    assert doc["runs"][-1]["retries"] == summary_retries
    prom = metrics.read_text()
    assert re.search(rf"retries_total {summary_retries}\b", prom)

    assert main(["report", ledger]) == ExitCode.OK
    table = capfd.readouterr().out
    assert f"Rejected manifest rows: {summary_rejected}" in table
    assert "field 'checkpoint_item_id'" in table


def test_report_refuses_a_bad_include_before_printing_anything(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 2))
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    capfd.readouterr()
    argv = ["report", str(tmp_path / "ledger.jsonl"), "--failed-manifest", str(tmp_path / "f")]
    assert main([*argv, "--include", "bogus"]) == ExitCode.USAGE
    out, err = capfd.readouterr()
    assert out == ""
    assert "bogus" in err


# -- 8. ledger hygiene ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"[1,2]\n", b"42\n", b"null\n", b'{"a": 1}\n'])
def test_a_ledger_of_lines_that_are_not_records_is_exit_8_and_left_alone(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 2))
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(content)
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.LEDGER
    assert "not a ledger line" in capfd.readouterr().err
    assert ledger.read_bytes() == content
    assert sum(sim.counters.requests.values()) == 0


@pytest.mark.parametrize("command", ["run", "plan"])
def test_the_manifest_as_ledger_is_refused(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    command: str,
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 2))
    before = manifest.read_bytes()
    argv = run_argv(sim, tmp_path, manifest)
    if command == "plan":
        argv = ["plan", "--manifest", str(manifest), "--endpoint", sim.base_url]
    argv += ["--ledger", str(tmp_path / "." / "m.csv")]
    assert main(argv) == ExitCode.USAGE
    assert "the same file" in capfd.readouterr().err
    assert manifest.read_bytes() == before


def test_a_complete_last_ledger_line_without_newline_is_kept(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 3)
    manifest = write_rows(tmp_path / "m.csv", rows[:2])
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes().rstrip(b"\n"))  # an editor dropped the newline
    finished = records(ledger, "run_finished")
    assert len(finished) == 1
    write_rows(manifest, rows)
    assert main([*resume_argv(sim, tmp_path), "--replan"]) == ExitCode.OK
    assert len(records(ledger, "run_finished")) == 2  # the first one is still there
    assert len(records(ledger, "result")) == 3


# -- 9. a per-pair completion report ----------------------------------------------------------


def test_report_pairs_writes_one_row_per_pair_with_its_final_state(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    sim.update_faults(p503=0.3)
    rows = fresh_rows(sim, 6)
    invalid = dict(rows[0], checkpoint_item_id="not-a-uuid")
    manifest = write_rows(tmp_path / "m.csv", [*rows, rows[1], invalid])  # a duplicate too
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.FAILED
    ledger = tmp_path / "ledger.jsonl"
    out_csv = tmp_path / "pairs.csv"
    capfd.readouterr()
    assert main(["report", str(ledger), "--pairs", str(out_csv)]) == ExitCode.OK
    assert f"wrote 7 pairs to {out_csv}" in capfd.readouterr().err
    with out_csv.open(encoding="utf-8", newline="") as handle:
        got = list(csv.DictReader(handle))
    assert len(got) == 7
    by_item = {(r["checkpoint_item_id"], r["status"]): r for r in got}
    for row in rows:
        line = by_item[row["checkpoint_item_id"], "replicated"]
        assert line["destination_region"] == row["destination_region"]
        assert line["destination_project_id"] == row["destination_project_id"]
        assert line["replication_record_id"]
        assert int(line["attempts"]) >= 1
    rejected = by_item["not-a-uuid", "rejected"]
    assert rejected["error_msg"]
    assert rejected["manifest_line"] == "9"
    results_in_ledger = records(ledger, "result")
    retried = sum(r["attempts"] - 1 for r in results_in_ledger if r["attempts"])
    assert sum(int(r["attempts"]) - 1 for r in got if r["status"] == "replicated") == retried


# -- 10. the smaller items --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--concurrency", "0"], "argument --concurrency: must be at least 1 (got '0')"),
        (["--rate", "nan"], "argument --rate: must be a finite number (got 'nan')"),
        (["--request-timeout", "0"], "argument --request-timeout: must be more than 0"),
    ],
)
def test_bad_numbers_are_refused_saying_what_is_wrong(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--manifest", "m.csv", "--ledger", str(tmp_path / "l"), *flags])
    assert exited.value.code == ExitCode.USAGE
    err = capfd.readouterr().err
    assert expected in err
    assert "_positive_int" not in err


def test_run_help_shows_one_default_for_endpoint(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capfd.readouterr().out
    start = out.index("--endpoint ENDPOINT ")
    entry = out[start : out.index("[env CSBS_ENDPOINT]", start)]
    assert entry.count("(default:") == 1


def test_plan_says_what_it_cannot_know_and_does_not_count_unsupported_pairs_as_to_send(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 3)
    nowhere = dict(rows[0], destination_region="xx-nowhere-9")
    manifest = write_rows(tmp_path / "m.csv", [*rows, nowhere])
    argv = ["plan", "--manifest", str(manifest), "--endpoint", sim.base_url]
    assert main(argv) == ExitCode.FAILED
    out = capfd.readouterr().out
    assert "~0s" not in out
    assert "under 1s" in out
    assert "no --rate set" in out
    assert main([*argv, "--json"]) == ExitCode.FAILED
    doc = json.loads(capfd.readouterr().out)
    assert doc["totals"]["unsupported"] == 1
    assert doc["totals"]["to_send"] == 3
    assert doc["regions"]["xx-nowhere-9"]["to_send"] == 0
    assert doc["estimate"]["requests"] == 3


def test_run_discover_dry_run_says_nothing_was_written(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    project = sim.state.projects[0]
    region = sim.state.capabilities()[project.region][0]
    dest = sim.state.destination_projects[region]
    argv = [
        "run",
        "--discover",
        "--dry-run",
        "--ledger",
        str(tmp_path / "ledger.jsonl"),
        "--endpoint",
        sim.base_url,
        "--project-id",
        project.id,
        "--region",
        project.region,
        "--to",
        f"{region}={dest}",
    ]
    main(argv)
    out = capfd.readouterr().out
    assert "pairs found (dry run: none written or sent)" in out
    assert "pairs written" not in out


def _final_progress(err: str) -> dict[str, Any]:
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (final,) = [e for e in events if e.get("event") == "run.progress" and e.get("final")]
    return dict(final)


def test_progress_never_counts_unsent_pairs_as_failed(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A stop (Ctrl-C, or here --max-duration: the same path) while pairs wait for their
    turn: they are withdrawn, not sent, and progress does not call them failed."""
    use_sim_credentials(monkeypatch, sim)
    sim.update_faults(latency_s=0.02)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 30))
    argv = [a for a in run_argv(sim, tmp_path, manifest) if a != "--no-progress"]
    code = main([*argv, "--concurrency", "2", "--per-region", "2", "--max-duration", "0.05"])
    err = capfd.readouterr().err
    assert code == ExitCode.INTERRUPTED, err
    withdrawn = [r for r in records(tmp_path / "ledger.jsonl", "result") if r["attempts"] == 0]
    assert withdrawn
    assert _final_progress(err)["failed"] == 0


def test_progress_limit_never_exceeds_concurrency(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 10))
    argv = [a for a in run_argv(sim, tmp_path, manifest) if a != "--no-progress"]
    assert main([*argv, "--concurrency", "8"]) == ExitCode.OK
    limits = [row["limit"] for row in _final_progress(capfd.readouterr().err)["regions"].values()]
    assert limits
    assert all(limit == 8 for limit in limits)


# -- 6. reconcile tells "ours" from "already there" -------------------------------------------


def test_reconcile_labels_a_record_older_than_the_first_attempt_already_replicated(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A killed run left two pairs in flight. One's record was there an hour before the
    attempt (someone else made it); the other's was created by the attempt."""
    use_sim_credentials(monkeypatch, sim)
    before, ours = fresh_rows(sim, 2)
    manifest = write_rows(tmp_path / "m.csv", [before, ours])
    now = datetime.now(UTC).isoformat()
    lines = [
        {
            "v": 1,
            "event": "run_started",
            "ts": now,
            "run_id": "killed",
            "manifest": str(manifest),
            "source": "manifest",
            "settings": {"endpoint": sim.base_url},
        },
        *(
            {"v": 1, "event": "attempt", "ts": now, "run_id": "killed", "attempt": 1, **row}
            for row in (before, ours)
        ),
    ]
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    def replicate(row: dict[str, str]) -> None:
        sim.state.replicate(
            row["project_id"],
            row["checkpoint_item_id"],
            row["destination_region"],
            row["destination_project_id"],
            limits=sim.config.faults,
        )

    replicate(before)  # on the service's clock, an hour before "now"
    sim.advance(3600)
    replicate(ours)  # now: what the killed run's request did

    assert main(resume_argv(sim, tmp_path)) == ExitCode.OK
    status = {r["checkpoint_item_id"]: r["status"] for r in records(ledger, "result")}
    assert status == {
        before["checkpoint_item_id"]: "already_replicated",
        ours["checkpoint_item_id"]: "replicated",
    }
    assert not any(n for (route, _), n in sim.counters.requests.items() if route == REPLICATE)


# -- a manifest moved away from the path its ledger recorded ---------------------------------


def test_resume_of_a_moved_manifest_names_the_ledger_the_path_and_the_way_on(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 3)
    manifest = write_rows(tmp_path / "m.csv", rows)
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.OK
    moved = manifest.rename(tmp_path / "moved.csv")
    ledger = tmp_path / "ledger.jsonl"
    before = ledger.read_bytes()
    capfd.readouterr()
    assert main(resume_argv(sim, tmp_path)) == ExitCode.USAGE
    err = capfd.readouterr().err
    assert f"manifest: {manifest.resolve()}: no such file" in err
    assert f"the ledger {ledger} recorded this manifest" in err
    assert "Restore it at that path" in err
    assert f"`resume --ledger {ledger} --manifest NEW_PATH`" in err
    assert "checked against the sha256" in err
    assert "Traceback" not in err
    assert ledger.read_bytes() == before  # nothing recorded
    # Its new path resumes it (the same bytes as pinned) ...
    assert main(resume_argv(sim, tmp_path, "--manifest", str(moved))) == ExitCode.OK
    # ... another file at that path is refused, as a changed manifest is.
    write_rows(moved, fresh_rows(sim, 4))
    capfd.readouterr()
    assert main(resume_argv(sim, tmp_path, "--manifest", str(moved))) == ExitCode.USAGE
    assert "--replan" in capfd.readouterr().err
