"""The two baselines every figure is compared with, each run as its own process.

``aiohttp``: the floor of what asyncio can do. One session, ``concurrency`` workers pulling
from one iterator (a semaphore in effect, without a task per request), no retries, no ledger,
no logging. ``threads``: what users write around the official SDK, a ``ThreadPoolExecutor``
of ``concurrency`` threads, each with its own ``requests.Session``.

Both sign every request with AK/SK exactly as the orchestrator does
(:meth:`orchestrator.service.aksk.AkSkSigner.sign`), so all three pay for the same HMAC and the
simulator verifies all three the same way. Each sends every manifest row once and prints
one JSON line: requests, answers by status, the loop's own seconds and the run's start and
end (wall clock) so a caller can line them up with the simulator's histogram.

    python -m bench.baselines aiohttp --base-url URL --ak AK --manifest M.csv --concurrency 64
    (the SK comes from the environment, BENCH_SK, never from the command line)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import yarl

from orchestrator.models import PROVIDER_ID
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret

__all__ = ["Request", "main", "requests_of"]


@dataclass(frozen=True, slots=True)
class Request:
    """One replicate call, prepared before the clock starts (as the orchestrator's plan is
    made before its pool runs): only signing and sending are timed."""

    url: yarl.URL
    project_id: str
    body: bytes


def requests_of(manifest: str, base_url: str) -> list[Request]:
    prepared = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = (
                f"/v1/{row['project_id']}/providers/{PROVIDER_ID}/checkpoint_items/"
                f"{row['checkpoint_item_id']}/replicate"
            )
            body = orjson.dumps(
                {
                    "replication": {
                        "destination_region": row["destination_region"],
                        "destination_project_id": row["destination_project_id"],
                    }
                }
            )
            prepared.append(Request(yarl.URL(base_url + path), row["project_id"], body))
    return prepared


def _headers(signer: AkSkSigner, request: Request) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Project-Id": request.project_id}
    signer.sign("POST", request.url, headers, request.body)
    return headers


# -- (a) bare aiohttp ----------------------------------------------------------------------


async def _aiohttp_run(work: list[Request], signer: AkSkSigner, concurrency: int) -> Counter[int]:
    import aiohttp  # noqa: PLC0415 - the threads baseline must not pay for it

    statuses: Counter[int] = Counter()
    pending: Iterator[Request] = iter(work)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for request in pending:
                headers = _headers(signer, request)
                async with session.post(request.url, data=request.body, headers=headers) as r:
                    await r.read()
                    statuses[r.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


# -- (b) ThreadPoolExecutor + requests -----------------------------------------------------


def _threads_run(work: list[Request], signer: AkSkSigner, concurrency: int) -> Counter[int]:
    import requests  # noqa: PLC0415 - the aiohttp baseline must not pay for it

    local = threading.local()
    lock = threading.Lock()
    statuses: Counter[int] = Counter()

    def send(request: Request) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        with lock:  # the signer caches its date string: keep it single-threaded
            headers = _headers(signer, request)
        answer = session.post(str(request.url), data=request.body, headers=headers, timeout=60)
        with lock:
            statuses[answer.status_code] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(send, work):
            pass
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("tool", choices=("aiohttp", "threads"))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ak", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    signer = AkSkSigner(args.ak, Secret(os.environ["BENCH_SK"]))
    work = requests_of(args.manifest, args.base_url.rstrip("/"))
    started_wall, started = time.time(), time.perf_counter()
    if args.tool == "aiohttp":
        statuses = asyncio.run(_aiohttp_run(work, signer, args.concurrency))
    else:
        statuses = _threads_run(work, signer, args.concurrency)
    loop_s = time.perf_counter() - started
    result = {
        "tool": args.tool,
        "requests": statuses.total(),
        "by_status": {str(k): v for k, v in sorted(statuses.items())},
        "loop_s": round(loop_s, 4),
        "started_at": started_wall,
        "finished_at": time.time(),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
