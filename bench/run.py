#!/usr/bin/env python3
"""feedsvc's benchmark: build and serving figures against their targets.

    .venv/bin/python bench/run.py [--count 100000] [--runs 3] [--json bench/results/run.json]
        [--only builds|serving|audience] [--setups shipped,defaults] [--duration 10] [--idle-seconds 20]

Writes a synthetic corpus (feedsvc.synth) into a fresh temporary folder
(/dev/shm when it has room), measures the parsing floors, full, no-op and
one-record builds (checking their output), the yaml-rs fast path, the same
with the shipped config.yaml (archives on: issue 12's one-record changes and
the archive pages they rewrite), and, unless
--only builds (or --skip-serve), issue 10's serving targets for each setup
(the shipped config.yaml, archives on; and every setting at its default):
start-up, memory (PSS) against a tenth of the records, idle CPU, latency and
throughput under wrk beside nginx on the same files, also while rebuilding,
latency beside 100 slow or idle connections, and how soon a changed record
is served (bench/serving.py says how each is
measured), and what recording the audience costs on 304s (issue 16,
bench/audience_cost.py). --only serving leaves out the build figures,
--only audience measures that cost alone. Prints one markdown
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

import audience_cost
import builds
import report
import serving


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="records in the synthetic corpus (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--skip-serve", action="store_true", help="build figures only (the same as --only builds)")
    parser.add_argument(
        "--only",
        choices=("builds", "serving", "audience"),
        help="measure only the build or the serving figures, or only the audience's cost on 304s",
    )
    parser.add_argument(
        "--setups",
        default=",".join(report.SETUPS),
        help=f"serving setups, comma-separated (default {','.join(report.SETUPS)}): "
        "shipped = the repository's config.yaml, defaults = every setting at its default",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (default 10)")
    parser.add_argument(
        "--idle-seconds", type=float, default=20.0, help="seconds of the idle CPU measurement (default 20)"
    )
    parser.add_argument("--workdir", type=Path, help="make the temporary folder here (default /dev/shm if it has room)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.count < 50 or args.runs < 1 or not 1 <= args.duration <= 600 or not 0 < args.idle_seconds <= 600:
        parser.error("--count must be at least 50, --runs at least 1, --duration 1 to 600, --idle-seconds up to 600")
    if args.skip_serve:
        if args.only in ("serving", "audience"):
            parser.error(f"--skip-serve and --only {args.only} contradict each other")
        args.only = "builds"
    args.setups = [s for s in args.setups.split(",") if s]
    unknown = [s for s in args.setups if s not in report.SETUPS]
    if unknown or not args.setups:
        parser.error(f"--setups: choose from {', '.join(report.SETUPS)}")
    return args


def version(cmd: list[str]) -> str:
    """The first line a command prints (its version, say); "not installed" when it cannot run."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def machine() -> dict[str, object]:
    nginx = serving.render.find_nginx()
    root = str(Path(__file__).resolve().parent.parent)
    commit = version(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    if commit.startswith("fatal"):  # a copy such as `git archive` gives: say which commit in its place
        return {"commit": os.environ.get("FEEDSVC_BENCH_COMMIT", "not a git checkout")} | _machine_rest(nginx)
    dirty = version(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]) not in ("", "?")
    return {"commit": commit + (" with uncommitted changes" if dirty else "")} | _machine_rest(nginx)


def _machine_rest(nginx: str | None) -> dict[str, object]:
    return {
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
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
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
        for spec in report.CATALOGUE:
            audience = "_audience_" in spec.id
            if spec.serving and args.only == "builds":
                results.skip(spec.id, "--skip-serve" if args.skip_serve else "--only builds")
            elif spec.serving and spec.id.split("_", 1)[0] not in args.setups:
                results.skip(spec.id, "not in --setups")
            elif args.only == "audience" and not audience and spec.id not in ("corpus_records", "corpus_write"):
                results.skip(spec.id, "--only audience")
            elif not spec.serving and args.only == "serving" and spec.id not in ("corpus_records", "corpus_write"):
                results.skip(spec.id, "--only serving")
        if args.only not in ("serving", "audience"):
            builds.floors(ws, args.runs, results)
            builds.builds(ws, args.runs, results)
            builds.archive_builds(ws, args.runs, results)
        if args.only in (None, "serving"):
            serving.serving(ws, args.setups, args.runs, args.duration, args.idle_seconds, results)
        if args.only != "builds":
            audience_cost.audience_costs(ws, args.setups, args.runs, args.duration, results)
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
    print(
        f"feedsvc benchmark, {info['date']}, commit {where['commit']}: `{info['command']}` ({info['seconds']:.0f}s)\n"
    )
    print(report.table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**info, "rows": rows}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
