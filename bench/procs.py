"""Child processes, measured: wall time, CPU seconds and peak RSS of exactly one child.

Every measured tool runs in its own process and is reaped with ``os.wait4``, whose rusage
(CPU seconds) belongs to that child alone (``RUSAGE_CHILDREN`` would add up every child
reaped so far, simulators included). Peak RSS is the child's ``VmHWM``, polled every 10 ms.
The simulator is a child too, started per measured run.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
import requests

__all__ = ["Measured", "SimProcess", "machine", "python_cmd", "run_measured"]

ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 60.0
_STEAL = 7  # user nice system idle iowait irq softirq steal guest guest_nice


def python_cmd(*args: str) -> list[str]:
    """The venv's interpreter running ``args`` (``-m orchestrator ...``, ``-m bench...``)."""
    return [sys.executable, *args]


@dataclass(frozen=True, slots=True)
class Measured:
    """One finished child: what it printed and what it cost."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    #: The share of the machine's CPU time the hypervisor gave to other guests while the child
    #: ran (``steal`` in /proc/stat), in percent: what makes this VM's figures drift.
    steal_pct: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def json_lines(self) -> list[dict[str, Any]]:
        """The stdout lines that are JSON objects (a baseline's result, say)."""
        found = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                found.append(orjson.loads(line))
        return found


def run_measured(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout_s: float = 900.0
) -> Measured:
    """Run ``cmd`` to the end; its rusage comes from ``wait4`` on its own pid."""
    out_path = Path(f"/tmp/bench-{os.getpid()}-{time.monotonic_ns()}")  # noqa: S108
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        ticks_before = _cpu_ticks()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)  # noqa: S603
        deadline = started + timeout_s
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        steal = _steal_pct(ticks_before, _cpu_ticks())
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return Measured(
        returncode=proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        # ru_maxrss of a child counts the forked copy of this (larger) process before its
        # exec; the child's own VmHWM, polled while it runs, does not.
        max_rss_mb=(peak_kb or usage.ru_maxrss) / 1024.0,
        stdout=stdout,
        stderr=stderr,
        steal_pct=steal,
    )


def _cpu_ticks() -> list[int]:
    """The machine's CPU time so far, by kind (the first line of /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            return [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def _steal_pct(before: list[int], after: list[int]) -> float:
    if len(before) < _STEAL + 1 or len(after) != len(before):
        return 0.0
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent[: _STEAL + 1])  # guest time is already counted in user
    return 100.0 * spent[_STEAL] / total if total else 0.0


def _vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set so far (KiB), or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class SimProcess:
    """``python -m orchestrator simulate --port 0 ...`` for one measured run.

    ``with SimProcess(["--items", "100"]) as sim:`` waits for the start-up JSON line
    (``sim.info``: base_url, ak, sk, projects...); leaving sends SIGINT and waits.
    """

    def __init__(self, flags: list[str]) -> None:
        self._cmd = python_cmd("-m", "orchestrator", "simulate", "--port", "0", *flags)
        self._proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(  # noqa: S603
            self._cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the first line, once it listens
        if not line:
            self._stop()
            raise RuntimeError(f"the simulator did not start: {' '.join(self._cmd)}")
        self.info = orjson.loads(line)
        return self

    def counters(self) -> dict[str, Any]:
        answer = requests.get(f"{self.base_url}/_sim/counters", timeout=_START_TIMEOUT_S)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def machine() -> dict[str, str]:
    """CPU model and cores, RAM, Python and OS: the context every figure needs."""
    model, cores = "unknown", 0
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("processor"):
                cores += 1
    ram_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
                break
    return {
        "cpu": f"{model}, {cores} logical cores",
        "ram": f"{ram_kb / 1024 / 1024:.1f} GiB",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()} ({_os_name()})",
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown distribution"
