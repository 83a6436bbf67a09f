"""The stored scan: a build compares the folder with the cache's last scan, not row by row.

A no-op build reads no row of the files table; a change is found from the
difference between the two scans; a cache written before scans were kept
falls back to comparing every row. Each case ends with the bytes of a full
build from scratch.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest

from feedsvc.build import incremental, refresh
from feedsvc.build.rows import Stamp
from feedsvc.config import Config
from feedsvc.synth import write_corpus


@pytest.fixture
def config(tmp_path: Path) -> Config:
    records = tmp_path / "records"
    write_corpus(records, 40, seed=9, topics=6, providers=10)
    return dataclasses.replace(Config(), records_dir=records, output_dir=tmp_path / "out", max_entries=10)


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def full_build(config: Config, where: Path) -> dict[str, bytes]:
    incremental.build(config, where / "out", cache=where / "cache.sqlite", full=True)
    return snapshot(where / "out")


def change_some(config: Config) -> None:
    paths = sorted(config.records_dir.glob("*.txt"))
    paths[0].unlink()
    text = paths[1].read_text(encoding="utf-8")
    paths[1].write_text(text.replace('title: "', 'title: "Changed: ', 1), encoding="utf-8")
    (config.records_dir / "zz_copy.txt").write_text(
        paths[2].read_text(encoding="utf-8").replace("https://", "https://copy.", 2), encoding="utf-8"
    )
    os.utime(paths[3], ns=(paths[3].stat().st_atime_ns, paths[3].stat().st_mtime_ns + 10**9))  # touched only


def forget_scan(cache: Path) -> None:
    with sqlite3.connect(cache) as db:
        db.execute("DELETE FROM meta WHERE key='scan'")


@pytest.mark.parametrize("stored_scan", [True, False], ids=["stored-scan", "cache-without-scan"])
def test_changes_are_found_with_and_without_a_stored_scan(stored_scan: bool, config: Config, tmp_path: Path) -> None:
    incremental.build(config)
    if not stored_scan:
        forget_scan(incremental.default_cache_path(config.output_dir))
    change_some(config)
    report = incremental.build(config)
    assert (report.changes.parsed, report.changes.removed_files) == (2, 1)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")
    again = incremental.build(config)
    assert (again.changes.parsed, again.changes.feeds_rendered, again.published.written) == (0, 0, 0)


def test_a_no_op_build_reads_no_file_row(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    incremental.build(config)

    def refuse(*args: object) -> None:
        raise AssertionError("the files table was read")

    monkeypatch.setattr(incremental.Store, "stamps", refuse)
    monkeypatch.setattr(incremental.Store, "digests", refuse)
    report = incremental.build(config)
    assert (report.changes.parsed, report.published.written) == (0, 0)


def test_scan_rows_are_the_stamps_in_path_order(config: Config) -> None:
    (config.records_dir / "sub").mkdir()
    (config.records_dir / "sub" / "a.md").write_text("---\n", encoding="utf-8")
    rows = refresh.scan_rows(config.records_dir)
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert "sub/a.md" in [row[0] for row in rows]
    stamps = refresh.scan(config.records_dir)
    assert list(stamps) == [row[0] for row in rows]
    st = (config.records_dir / "sub" / "a.md").stat()
    assert stamps["sub/a.md"] == Stamp(st.st_size, st.st_mtime_ns, st.st_ino)
