"""``report --format html`` and ``coverage --format html``: one self-contained file each,
opened in a real headless Chromium (Debian's, driven by Playwright): no console error, every
chart drawn, nothing fetched from the network. Also: ``report`` over several ledgers."""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Pages:
    report: Path
    coverage: Path
    ledgers: tuple[Path, Path]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Pages:
    work = tmp_path_factory.mktemp("html")
    monkeypatch = pytest.MonkeyPatch()
    try:
        with simulator_thread(items=280, age_days=7, regions=("cn-north-1",), p503=0.2) as sim:
            use_sim_credentials(monkeypatch, sim)
            ledgers = (work / "a.jsonl", work / "b.jsonl")
            fast = work / "fast.toml"  # retries without waiting
            fast.write_text("[retry]\nbase_delay = 0.001\nmax_delay = 0.002\n")
            rows = list(estate_rows(sim.state, limit=70, destinations=3))
            for n, ledger in enumerate(ledgers):
                manifest = work / f"m{n}.csv"  # two accounts: no pair in both
                part = rows[:30] if n == 0 else rows[30:]
                with manifest.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, MANIFEST_COLUMNS)
                    writer.writeheader()
                    writer.writerows(part)
                code = main(
                    ["run", "--manifest", str(manifest), "--ledger", str(ledger),
                     "--endpoint", sim.base_url, "--no-progress", "--log-level", "error",
                     "--config", str(fast)]
                )  # fmt: skip
                assert code in (0, 3, 4)
            report = work / "report.html"
            assert main(["report", *map(str, ledgers), "--format", "html", "-o", str(report)]) == 0
            coverage = work / "coverage.html"
            project = sim.state.projects[0]
            at = datetime.fromtimestamp(sim.state.now(), UTC).isoformat()
            code = main(
                ["coverage", "--endpoint", sim.base_url, "--project-id", project.id,
                 "--region", project.region, "--region-to", "cn-east-2", "--region-to",
                 "cn-south-1", "--rpo", "26h", "--at", at, "--format", "html", "-o",
                 str(coverage), "--log-level", "error", "--ledger", str(ledgers[0])]
            )  # fmt: skip
            assert code == 3
    finally:
        monkeypatch.undo()
    return Pages(report, coverage, ledgers)


def test_pages_are_self_contained(pages: Pages) -> None:
    for page in (pages.report, pages.coverage):
        text = page.read_text(encoding="utf-8")
        assert 'src="http' not in text
        assert "<script" in text
        assert text.count("plotly.js v") >= 1  # the runtime itself, inlined


def test_report_over_several_ledgers_counts_the_last_run_of_each(
    pages: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(pages.ledgers[0]), "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["report", str(pages.ledgers[1]), "--format", "json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert main(["report", *map(str, pages.ledgers), "--format", "json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["pairs"] == first["pairs"] + second["pairs"]
    assert len(both["runs"]) == 2


def _browser_or_skip() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium here: apt-get install chromium")


@pytest.mark.parametrize(("name", "charts"), [("report", 4), ("coverage", 3)])
def test_pages_render_in_headless_chromium_offline(
    pages: Pages, name: str, charts: int, tmp_path: Path
) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    page_file: Path = getattr(pages, name)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                timeout=30_000,
            )
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == charts
            for index in range(charts):
                assert plots.nth(index).locator("svg.main-svg").count() >= 1
                assert plots.nth(index).locator("g.trace").count() >= 1
            shot = Path(os.environ.get("CSBS_SCREENSHOT_DIR", tmp_path)) / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith("file:")] == []


def test_html_without_plotly_says_how_to_install_it(
    pages: Pages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "orchestrator.insight.html", raising=False)
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)
    code = main(["report", str(pages.ledgers[0]), "--format", "html"])
    assert code == 2
    assert "csbs-orchestrator[html]" in capsys.readouterr().err
