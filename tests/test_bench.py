"""bench/run.py end to end on a small corpus, so the benchmark cannot rot between runs.

The full benchmark (100,000 records, servers under wrk) takes a long while and
is run by hand (README "Benchmarks"); this runs its build half on 300 records
and checks that every row the README table has is there, measured or marked
skipped, and that the checks it makes of the output hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "run.py"
#: What the benchmark must report (issue 5): floors, builds and their ratios, checks, serving.
REQUIRED = {
    "floor_read", "floor_cloader", "full_build", "full_build_ratio", "noop_build", "noop_ratio", "noop_written",
    "noop_mtimes_changed", "add_build", "add_ratio", "change_build", "change_ratio", "delete_build", "delete_ratio",
    "incremental_identical", "fast_path_share", "fast_path_differs", "build_peak_rss", "build_peak_rss_workers",
    "serve_200_rps", "serve_304_rps", "static_200_rps", "static_304_rps", "proxy_200_rps", "proxy_304_rps",
    "serve_200_p99", "static_304_p99", "serve_static_200_ratio", "serve_static_304_ratio", "proxy_static_200_ratio",
    "proxy_static_304_ratio", "serve_rss_startup", "serve_rss_reloaded", "serve_rss_drift",
}  # fmt: skip
SERVING_PREFIXES = ("serve_", "static_", "proxy_")


def test_bench_runs_end_to_end_and_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    work = tmp_path / "work"
    work.mkdir()
    args = ["--count", "300", "--runs", "1", "--skip-serve", "--json", str(out), "--workdir", str(work)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["count"] == 300 and data["runs"] == 1 and not data["failure"]
    rows = {r["id"]: r for r in data["rows"]}
    assert len(rows) == len(data["rows"])  # no row twice
    assert REQUIRED <= rows.keys()
    for id, row in rows.items():
        if id.startswith(SERVING_PREFIXES):
            assert row["status"] == "SKIP" and row["note"] == "--skip-serve", id
            continue
        assert row["status"] in ("PASS", "MISS", "INFO"), (id, row)
        assert isinstance(row["median"], float) and len(row["values"]) >= 1, id
        assert (row["status"] == "INFO") == (row["target"] == ""), id
        # The table printed has the same row, with the same verdict.
        lines = [line for line in done.stdout.splitlines() if line.startswith(f"| {row['figure']} |")]
        assert len(lines) == 1 and f"| {row['status']} |" in lines[0], id
    # What the benchmark checks, not just times, holds.
    assert rows["corpus_records"]["median"] == 300
    assert rows["noop_written"]["median"] == 0 and rows["noop_written"]["status"] == "PASS"
    assert rows["noop_mtimes_changed"]["median"] == 0
    assert rows["incremental_identical"]["median"] == 3 and rows["incremental_identical"]["status"] == "PASS"
    assert rows["fast_path_differs"]["median"] == 0
    assert rows["fast_path_share"]["median"] > 90
    assert rows["full_build"]["median"] > rows["noop_build"]["median"] > 0
    assert rows["full_build_ratio"]["median"] == rows["full_build"]["median"] / rows["floor_cloader"]["median"]
    # The corpus and builds went to the work folder and were removed; nothing was left beside the JSON.
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "work"]
