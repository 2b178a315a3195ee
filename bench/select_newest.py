"""``python -m bench.select_newest``: ``select = "all"`` against ``"newest"`` on an aged estate.

One simulated source region whose resources have a backup a day for ``--days`` days, copied to
three destination regions with every coverage profile (covered, stale, failing, running,
missing). Each mode discovers its pairs, then a *window* sends only the first ``W`` of them
(``W`` = a third of the pairs ``all`` finds: the night is too short for the backlog); the
copies then finish and coverage is measured at ``--rpo``. A third line sends ``newest``'s
pairs in listing order instead of largest-lag-first, to show what the order buys when the
window is a third of *its* work.

In-process, on a manual clock, one replicate request at a time: the figures are counts and
lags, not speeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from orchestrator.discovery.discover import discover
from orchestrator.discovery.rules import Destination, DiscoverConfig, Rule, Source
from orchestrator.insight.coverage import CoverageFold, State, format_age
from orchestrator.insight.coverage_input import observe
from orchestrator.models import ReplicationTask
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import ManualClock, Simulator, SimulatorConfig

H = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    found: int
    sent: int
    covered: int
    pairs: int
    missing: int
    worst_lag_s: float | None


def _client(sim: Simulator) -> CsbsClient:
    return CsbsClient(
        ClientSettings(endpoint=sim.base_url), AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    )


def _config(sim: Simulator, select: str) -> DiscoverConfig:
    project = sim.state.projects[0]
    regions = sim.state.capabilities()[project.region]
    rule = Rule(tuple(Destination(r, sim.state.destination_projects[r]) for r in regions))
    return DiscoverConfig((Source(project.id, project.region),), (rule,), select=select)


async def _coverage(
    sim: Simulator, client: CsbsClient, rpo_s: float
) -> tuple[int, int, int, float | None]:
    config = _config(sim, "all")
    source = config.sources[0]
    fold = CoverageFold()
    targets = [d.region for d in config.rules[0].to]
    async for item in client.iter_items(source.project_id, region=source.region):
        seen = observe(
            item, project_id=source.project_id, source_region=source.region, targets=targets
        )
        if seen is not None:
            fold.add(seen)
    coverage = fold.result(now=sim.state.now(), rpo_s=rpo_s)
    covered = sum(r.state is State.COVERED for r in coverage.rows)
    missing = sum(r.lag_s is None for r in coverage.rows)
    lags = [lag for lag in coverage.worst_lag().values() if lag is not None]
    return covered, len(coverage.rows), missing, max(lags, default=None)


async def _one(
    label: str,
    args: argparse.Namespace,
    select: str,
    window: int | None,
    *,
    listing_order: bool = False,
) -> tuple[Outcome, int]:
    config = SimulatorConfig.from_knobs(
        items=args.items, age_days=args.days, regions=("cn-north-1",), seed=args.seed
    )
    async with Simulator(config, clock=ManualClock()) as sim, _client(sim) as client:
        found = await discover(client, _config(sim, select))
        tasks: Sequence[ReplicationTask] = found.tasks
        if listing_order:
            order = {
                t.checkpoint_item_id: i
                for i, t in enumerate((await discover(client, _config(sim, "all"))).tasks)
            }
            tasks = sorted(tasks, key=lambda t: order.get(t.checkpoint_item_id, 0))
        budget = len(tasks) if window is None else window
        sent = 0
        for task in tasks[:budget]:
            await client.replicate(task)
            sent += 1
        sim.advance(config.copy_wait_s + config.copy_duration_s + 1)
        covered, pairs, missing, worst = await _coverage(sim, client, args.rpo * H)
        return Outcome(label, len(found.tasks), sent, covered, pairs, missing, worst), len(
            found.tasks
        )


async def main(args: argparse.Namespace) -> list[Outcome]:
    before_all, all_pairs = await _one("all, nothing sent", args, "all", 0)
    window = all_pairs // 3
    outcomes = [before_all]
    outcomes.append((await _one(f"all, window {window}", args, "all", window))[0])
    newest, newest_pairs = await _one(f"newest, window {window}", args, "newest", window)
    outcomes.append(newest)
    small = newest_pairs // 3
    outcomes.append(
        (await _one(f"newest, window {small}, largest lag first", args, "newest", small))[0]
    )
    outcomes.append(
        (
            await _one(
                f"newest, window {small}, listing order", args, "newest", small, listing_order=True
            )
        )[0]
    )
    return outcomes


def _print(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print(f"estate: {args.items} backups, {args.days} days, RPO {args.rpo:g}h, seed {args.seed}")
    print("| run | pairs found | copies sent | covered | not covered | never copied | worst lag |")
    print("|---|---|---|---|---|---|---|")
    for o in outcomes:
        print(
            f"| {o.label} | {o.found} | {o.sent} | {o.covered} | {o.pairs - o.covered} | "
            f"{o.missing} | {format_age(o.worst_lag_s)} |"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.select_newest")
    parser.add_argument("--items", type=int, default=7000, help="backups (default: 7000)")
    parser.add_argument("--days", type=int, default=7, help="days of backups (default: 7)")
    parser.add_argument("--rpo", type=float, default=26.0, help="hours (default: 26)")
    parser.add_argument("--seed", type=int, default=1, help="(default: 1)")
    args = parser.parse_args()
    _print(anyio.run(main, args), args)


if __name__ == "__main__":
    cli()
