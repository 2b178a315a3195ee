"""``run`` through the CLI (``main(argv)`` in this process) against a simulator served from its
own thread: secrets never reach any output, ``--strict``, and the documented exit codes.

Every artefact a run leaves (stdout, stderr, the ``--log-file``, the ledger, the
``--metrics-file``) is scanned byte for byte for each credential the process knew.
"""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.app import TOKENS
from orchestrator.simulator.csbs import CAPABILITIES, REPLICATE
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
WRONG_SK = "this-is-not-the-secret-key-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the developer's own environment reaches these runs."""
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "CSBS_AUTH_TOKEN",
        "CSBS_IAM_PASSWORD",
        "CSBS_IAM_USER",
        "CSBS_IAM_DOMAIN",
        "CSBS_IAM_ENDPOINT",
        "CSBS_ENDPOINT",
        "CSBS_CONCURRENCY",
        "CSBS_RATE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=60, seed=3) as served:
        yield served


# -- helpers ------------------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def fresh_rows(sim: Simulator, count: int | None = None) -> list[dict[str, str]]:
    """Rows for available items without replication history (so each ends ``replicated``)."""
    rows = [
        row
        for row in estate_rows(sim.state)
        if sim.state.latest_record(row["checkpoint_item_id"], row["destination_region"]) is None
    ]
    return rows[:count]


def row_for_status(sim: Simulator, status: str) -> dict[str, str]:
    """A row for an item in ``status`` (e.g. ``error``: the service refuses it for good)."""
    for project in sim.state.projects:
        for item in sim.state.items_of(project.id):
            if item.status == status:
                region = sim.state.capabilities()[project.region][0]
                return {
                    "checkpoint_item_id": item.id,
                    "project_id": project.id,
                    "source_region": project.region,
                    "destination_region": region,
                    "destination_project_id": sim.state.destination_projects[region],
                }
    raise AssertionError(f"no {status} item in the estate")


def invalid_row(sim: Simulator) -> dict[str, str]:
    return dict(fresh_rows(sim, 1)[0], checkpoint_item_id="not-a-uuid")


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(FAST_CONFIG + extra, encoding="utf-8")
    return path


def run_argv(
    sim: Simulator, tmp_path: Path, manifest: Path, *extra: str, config: Path | None = None
) -> list[str]:
    return [
        "run",
        "--manifest",
        str(manifest),
        "--ledger",
        str(tmp_path / "ledger.jsonl"),
        "--endpoint",
        sim.base_url,
        "--config",
        str(config or config_file(tmp_path)),
        "--no-progress",
        "--log-format",
        "json",
        *extra,
    ]


def replicate_requests(sim: Simulator) -> int:
    return sum(n for (route, _), n in sim.counters.requests.items() if route == REPLICATE)


def results(ledger: Path) -> list[dict[str, Any]]:
    return [r for r in iter_records(ledger) if r["event"] == "result"]


def run_finished(ledger: Path) -> dict[str, Any]:
    (line,) = [r for r in iter_records(ledger) if r["event"] == "run_finished"]
    return line


def assert_nowhere(secrets: list[str], outputs: dict[str, bytes]) -> None:
    for secret in secrets:
        assert len(secret) >= 8, "too short to be a meaningful scan"
        for name, data in outputs.items():
            assert secret.encode() not in data, f"a secret leaked into {name}"


def output_flags(tmp_path: Path) -> list[str]:
    """Debug logs to a file and a metrics file: every output :func:`artefacts` then scans."""
    return [
        "--log-level",
        "debug",
        "--log-file",
        str(tmp_path / "log.jsonl"),
        "--metrics-file",
        str(tmp_path / "metrics.prom"),
    ]


def artefacts(tmp_path: Path, out: str, err: str) -> dict[str, bytes]:
    """stdout, stderr and every file the run wrote, as bytes."""
    found = {"stdout": out.encode(), "stderr": err.encode()}
    for name in ("ledger.jsonl", "log.jsonl", "metrics.prom"):
        found[name] = (tmp_path / name).read_bytes()
        assert found[name], f"{name} is empty"
    return found


# -- secrets ------------------------------------------------------------------------------------


def test_ak_sk_never_appear_in_any_output(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sim.update_faults(p503=0.3, p_drop=0.1, p_apply_drop=0.05, p_malformed=0.05)
    use_sim_credentials(monkeypatch, sim)
    rows = [*fresh_rows(sim), row_for_status(sim, "error"), invalid_row(sim)]
    manifest = write_rows(tmp_path / "m.csv", rows)
    code = main(run_argv(sim, tmp_path, manifest, *output_flags(tmp_path)))
    captured = capfd.readouterr()
    assert code == ExitCode.FAILED, captured.err
    outputs = artefacts(tmp_path, captured.out, captured.err)
    assert b"replicate" in outputs["log.jsonl"]  # retries and failures were logged
    assert_nowhere([sim.config.sk, sim.config.ak], outputs)
    for data in outputs.values():
        assert b"SDK-HMAC-SHA256" not in data
        assert b"Signature=" not in data


def test_iam_password_and_tokens_never_appear_in_any_output(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    tokens = record_tokens(sim, monkeypatch)
    revoke_once_after(sim, monkeypatch, requests=10)  # forces a 401 and a renewal mid-run
    sim.update_faults(p503=0.2)
    monkeypatch.setenv("CSBS_IAM_PASSWORD", sim.config.password)
    config = config_file(
        tmp_path, f'[auth]\nuser = "{sim.config.user}"\ndomain = "{sim.config.domain}"\n'
    )
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim))
    argv = run_argv(
        sim,
        tmp_path,
        manifest,
        "--iam-endpoint",
        sim.base_url,
        *output_flags(tmp_path),
        config=config,
    )
    code = main(argv)
    captured = capfd.readouterr()
    assert code == ExitCode.OK, captured.err
    assert len(tokens) >= 2  # the first token, and the one after the revocation
    assert sim.counters.requests_for(TOKENS, 201) == len(tokens)
    outputs = artefacts(tmp_path, captured.out, captured.err)
    assert_nowhere([sim.config.password, *tokens], outputs)
    for data in outputs.values():
        assert b"MIIsim" not in data  # no part of any token


def record_tokens(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    issued: list[str] = []
    original = sim.auth.issue_token

    def issue(body: bytes) -> Any:
        token = original(body)
        issued.append(token.token)
        return token

    monkeypatch.setattr(sim.auth, "issue_token", issue)
    return issued


def revoke_once_after(sim: Simulator, monkeypatch: pytest.MonkeyPatch, *, requests: int) -> None:
    original = sim.auth.check
    seen = [0]

    def check(**kwargs: Any) -> None:
        seen[0] += 1
        if seen[0] == requests:
            sim.auth.revoke_tokens()
        original(**kwargs)

    monkeypatch.setattr(sim.auth, "check", check)


def test_a_refused_iam_password_stops_at_once(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CSBS_IAM_PASSWORD", "not-the-password-at-all")
    config = config_file(
        tmp_path, f'[auth]\nuser = "{sim.config.user}"\ndomain = "{sim.config.domain}"\n'
    )
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim))
    code = main(run_argv(sim, tmp_path, manifest, "--iam-endpoint", sim.base_url, config=config))
    captured = capfd.readouterr()
    assert code == ExitCode.AUTH
    assert "credentials refused" in captured.err
    # Asked once: IAM, too, locks a user after repeated bad passwords.
    assert sim.counters.requests_for(TOKENS, 401) == 1
    assert replicate_requests(sim) == 0
    assert_nowhere(["not-the-password-at-all"], {"out": captured.out.encode()})
    assert_nowhere(["not-the-password-at-all"], {"err": captured.err.encode()})


# -- strict and default modes -------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["invalid", "conflict"])
def test_strict_refuses_a_bad_row_and_sends_nothing(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 10)
    if problem == "invalid":
        rows.insert(4, invalid_row(sim))  # line 6 (the header is line 1)
        where = "m.csv:6"
    else:
        rows.insert(4, dict(rows[1], destination_project_id="e" * 32))
        where = "lines 3, 6"
    manifest = write_rows(tmp_path / "m.csv", rows)
    code = main(run_argv(sim, tmp_path, manifest, "--strict"))
    err = capfd.readouterr().err
    assert code == ExitCode.USAGE
    assert "--strict" in err
    assert where in err
    assert "Traceback" not in err
    assert replicate_requests(sim) == 0
    assert sum(sim.counters.requests.values()) == 0
    ledger = tmp_path / "ledger.jsonl"
    assert not ledger.exists() or ledger.stat().st_size == 0


def test_default_mode_sends_valid_rows_and_records_the_rest(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 10)
    rows.insert(4, invalid_row(sim))
    manifest = write_rows(tmp_path / "m.csv", rows)
    code = main(run_argv(sim, tmp_path, manifest))
    out, err = capfd.readouterr()
    assert code == ExitCode.FAILED
    assert sim.counters.replications.total() == 10
    lines = results(tmp_path / "ledger.jsonl")
    (rejected,) = [r for r in lines if r["status"] == "rejected"]
    assert (rejected["manifest_line"], rejected["field"]) == (6, "checkpoint_item_id")
    assert sum(r["status"] == "replicated" for r in lines) == 10
    # The person who ran it sees what to fix, where, without opening the ledger...
    where = f"{manifest}:6: field 'checkpoint_item_id': 'not-a-uuid' is not a UUID"
    assert f"manifest rows not sent; `report` lists every rejected row:\n  {where}" in out
    # ... and so does whatever reads the JSON logs.
    (warning,) = [
        e for e in map(orjson.loads, err.splitlines()) if e["event"].startswith("manifest")
    ]
    assert (warning["event"], warning["level"], warning["rows"]) == (
        "manifest.rows_rejected",
        "warning",
        1,
    )
    assert warning["first"][0].startswith(where)


def test_the_summary_names_the_first_few_problems_only(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    rows = fresh_rows(sim, 12)
    for i in range(7):  # lines 2-8 (the header is line 1)
        rows[i] = dict(rows[i], checkpoint_item_id=f"bad-{i}")
    rows[8] = dict(rows[8], destination_project_id="f" * 32)
    rows.append(rows[8] | {"destination_project_id": "e" * 32})  # a conflict: lines 10, 14
    manifest = write_rows(tmp_path / "m.csv", rows)
    assert main(run_argv(sim, tmp_path, manifest)) == ExitCode.FAILED
    out = capfd.readouterr().out
    assert "manifest rows not sent (the first 5 of 8); `report` lists every rejected row:" in out
    listed = [line for line in out.splitlines() if line.startswith("  ")]
    reason = "is not a UUID (8-4-4-4-12 hex digits)"
    assert listed == [
        f"  {manifest}:{n}: field 'checkpoint_item_id': 'bad-{n - 2}' {reason}" for n in range(2, 7)
    ]
    assert sim.counters.replications.total() == 12 - 7 - 1


def test_a_service_never_reached_stops_soon_and_says_why(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A wrong endpoint: no request ever connects. The run stops after the patience
    (min(60 s, --retry-time): 0.2 s here), exit 4, and names the error and what to check."""
    use_sim_credentials(monkeypatch, sim)
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim, 5))
    argv = run_argv(sim, tmp_path, manifest, "--retry-time", "0.2")
    argv[argv.index("--endpoint") + 1] = f"http://127.0.0.1:{closed}"
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == ExitCode.GAVE_UP
    assert out == ""
    # The preflight found it: nothing recorded, nothing sent.
    assert f"Cannot connect to host 127.0.0.1:{closed}" in err
    assert "service unreachable: no answer from the service" in err
    assert "check --endpoint (or --region) and the network" in err
    assert not (tmp_path / "ledger.jsonl").exists() or not results(tmp_path / "ledger.jsonl")
    assert sum(sim.counters.requests.values()) == 0


# -- exit codes ---------------------------------------------------------------------------------


def _exit_code_case(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict[str, str]],
    *extra: str,
) -> int:
    use_sim_credentials(monkeypatch, sim)
    manifest = write_rows(tmp_path / "m.csv", rows)
    return main(run_argv(sim, tmp_path, manifest, *extra))


def test_exit_0_when_every_pair_is_done(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sim.update_faults(p503=0.3)
    code = _exit_code_case(sim, tmp_path, monkeypatch, fresh_rows(sim))
    out = capfd.readouterr().out
    assert code == ExitCode.OK
    assert out.startswith("done: replicated ")
    assert run_finished(tmp_path / "ledger.jsonl")["exit_code"] == 0


def test_exit_3_with_permanent_failures(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rows = [*fresh_rows(sim, 5), row_for_status(sim, "error")]
    code = _exit_code_case(sim, tmp_path, monkeypatch, rows)
    capfd.readouterr()
    assert code == ExitCode.FAILED
    (failed,) = [r for r in results(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert (failed["http_status"], failed["error_code"]) == (400, "CSBS.4000")


def test_exit_4_when_pairs_gave_up(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sim.update_faults(p503=1.0)
    # Few pairs: fewer 503s in a row than open the region's breaker (its pauses are real).
    code = _exit_code_case(sim, tmp_path, monkeypatch, fresh_rows(sim, 4), "--max-attempts", "2")
    out = capfd.readouterr().out
    assert code == ExitCode.GAVE_UP
    assert "resume" in out
    assert sim.counters.requests_for(REPLICATE, 503) == 8
    assert {r["status"] for r in results(tmp_path / "ledger.jsonl")} == {"gave_up"}


def test_exit_7_when_credentials_are_refused(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_sim_credentials(monkeypatch, sim)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", WRONG_SK)
    manifest = write_rows(tmp_path / "m.csv", fresh_rows(sim))
    code = main(run_argv(sim, tmp_path, manifest))
    captured = capfd.readouterr()
    assert code == ExitCode.AUTH
    assert "credentials refused" in captured.err
    assert "credentials refused: credentials refused" not in captured.err
    assert "401" in captured.err
    # The preflight's one signed GET proves the credentials wrong: one bad signature per
    # run, so runs after runs never reach the 5 that lock the access key for everyone.
    assert sim.counters.requests_for(CAPABILITIES, 401) == 1
    assert replicate_requests(sim) == 0
    assert "locked" not in captured.err
    code = main(run_argv(sim, tmp_path, manifest))
    assert code == ExitCode.AUTH
    assert sim.counters.requests_for(CAPABILITIES, 401) == 2
    assert "locked" not in capfd.readouterr().err
    # Nothing recorded, and no empty ledger file left behind (docs/running.md).
    assert not (tmp_path / "ledger.jsonl").exists()
    assert_nowhere([WRONG_SK, sim.config.sk], {"stdout": captured.out.encode()})
    assert_nowhere([WRONG_SK, sim.config.sk], {"stderr": captured.err.encode()})
