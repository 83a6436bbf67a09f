#!/usr/bin/env python3
"""feedsvc's benchmark: build and serving figures against their targets.

    .venv/bin/python bench/run.py [--count 100000] [--runs 3] [--json bench/results/run.json] [--skip-serve]

Writes a synthetic corpus (feedsvc.synth) into a fresh temporary folder
(/dev/shm when it has room), measures the parsing floors, full, no-op and
one-record builds (checking their output), the yaml-rs fast path, and, unless
--skip-serve, feedsvc serve, nginx on the static build and nginx as a caching
proxy under wrk, and the server's memory across reloads. Prints one markdown
table (median, min–max, target, PASS/MISS) and writes the same rows as JSON.
Figures are wall-clock times on a shared machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import builds
import report
import serving


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="records in the synthetic corpus (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--skip-serve", action="store_true", help="build figures only: no servers, no wrk")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (default 10)")
    parser.add_argument(
        "--reload-seconds", type=float, default=20.0, help="seconds of record changes for the memory check (default 20)"
    )
    parser.add_argument("--workdir", type=Path, help="make the temporary folder here (default /dev/shm if it has room)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.count < 50 or args.runs < 1 or not 1 <= args.duration <= 600 or not 0 < args.reload_seconds <= 600:
        parser.error("--count must be at least 50, --runs at least 1, --duration 1 to 600, --reload-seconds up to 600")
    return args


def machine() -> dict[str, object]:
    def version(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return "not installed"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"

    nginx = serving.render.find_nginx()
    root = str(Path(__file__).resolve().parent.parent)
    commit = version(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = version(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]) not in ("", "?")
    return {
        "commit": commit + (" with uncommitted changes" if dirty else ""),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nginx": version([nginx, "-v"]) if nginx else "not installed",
        "wrk": version(["wrk", "--version"]) if shutil.which("wrk") else "not installed",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = report.Results()
    started = time.monotonic()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "count": args.count,
        "runs": args.runs,
        "machine": machine(),
    }
    root = builds.workspace_root(args.workdir, args.count)
    failure = ""
    try:
        builds.log(f"writing {args.count:,} records into {root}")
        ws = builds.make_workspace(root, args.count, results)
        builds.floors(ws, args.runs, results)
        builds.builds(ws, args.runs, results)
        if args.skip_serve:
            for spec in report.CATALOGUE:
                if spec.serving:
                    results.skip(spec.id, "--skip-serve")
        else:
            serving.serving(ws, args.runs, args.duration, args.reload_seconds, results)
    except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as e:
        failure = f"{type(e).__name__}: {e}"
        builds.log(f"stopped: {failure}")
    finally:
        if args.keep:
            builds.log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for spec in report.CATALOGUE:
        row = results.rows[spec.id]
        if not row.values and not row.skipped:
            results.skip(spec.id, "not measured" + (f" ({failure})" if failure else ""))
    rows = results.as_list()
    info["seconds"] = round(time.monotonic() - started, 1)
    info["failure"] = failure
    where = info["machine"]
    assert isinstance(where, dict)
    print(f"feedsvc benchmark, {info['date']}, commit {where['commit']}: `{info['command']}` ({info['seconds']:.0f}s)\n")
    print(report.table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**info, "rows": rows}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
