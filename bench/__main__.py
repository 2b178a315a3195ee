"""``python -m bench [--full] [--only NAME ...] [--write]``: run, print, optionally record."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import ROOT, machine
from bench.suites import FULL, QUICK, SUITES, Section, workdir

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def render(sections: list[Section], argv: list[str], took_s: float, load: str) -> str:
    info = machine()
    out = [
        BEGIN,
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {took_s / 60:.1f} min with:",
        "",
        "```",
        f".venv/bin/python -m bench {shlex.join(argv)}".rstrip(),
        "```",
        "",
        f"- CPU: {info['cpu']}",
        f"- RAM: {info['ram']}",
        f"- Python: {info['python']}",
        f"- OS: {info['os']}",
        f"- load average (1 min) at start and end: {load}",
        "",
    ]
    for section in sections:
        out += [f"### {section.title}", "", f"Setup: `{section.command}`", ""]
        out += ["| target | measured | |", "|---|---|---|"]
        out += [f"| {t} | {g} | {'met' if ok else '**missed**'} |" for t, g, ok in section.verdicts]
        out += ["", "| " + " | ".join(section.header) + " |"]
        out += ["|" + "---|" * len(section.header)]
        out += ["| " + " | ".join(row) + " |" for row in section.rows]
        out += [""] + [f"{note}" for note in section.notes] + [""]
    out.append(END)
    return "\n".join(out)


def write_results(text: str, path: Path) -> None:
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        current = head + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(current, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full sizes (tens of minutes)")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SUITES), default=None, help="run only these"
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the results section of BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    sizes = FULL if args.full else QUICK
    # The soak takes most of an hour: only when asked for by name.
    names = args.only or [name for name in SUITES if name != "soak"]
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    sections = []
    with workdir() as tmp:
        for name in names:
            print(f"== {name}", flush=True)
            sections.append(SUITES[name](Path(tmp), sizes))
    load = f"{load_start:.2f} / {os.getloadavg()[0]:.2f}"
    text = render(sections, given, time.monotonic() - started, load)
    if args.write:
        write_results(text, ROOT / "BENCHMARKS.md")
        print(f"wrote the results into {ROOT / 'BENCHMARKS.md'}")
    missed = [t for s in sections for t, _, ok in s.verdicts if not ok]
    print(f"{len(missed)} target(s) missed" + (": " + "; ".join(missed) if missed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
