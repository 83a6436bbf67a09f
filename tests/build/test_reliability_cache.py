"""Reliability: a damaged build cache is never published and never stops a build (issue 11.3, 11.4).

Each case damages a built cache the way a disk, a crash or a careless hand
would, changes an unrelated record, builds with the real command, and expects
exactly the bytes of a clean full build, one warning naming the cache, and no
traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from servers import write_config

from feedsvc import synth
from feedsvc.build import incremental, rows
from feedsvc.build.archive import Archives
from feedsvc.cli import main
from feedsvc.config import Config, load_config
from feedsvc.records import codec
from feedsvc.records.read import load_file, settings_for


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }  # fmt: skip


#: The newest entry of the all-articles feed: in the document every build that changes a record renders.
NEWEST = (
    "SELECT f.rel, f.rec FROM members m JOIN files f ON f.rel = m.rel WHERE m.feed = 'all/all'"
    " ORDER BY m.published DESC, m.id LIMIT 1"
)


def _flip_in_a_record(db: sqlite3.Connection) -> None:
    rel, rec = db.execute(NEWEST).fetchone()
    at = rec.index(b"https://") + 9  # inside the article's URL: the published link would change
    db.execute("UPDATE files SET rec=? WHERE rel=?", (rec[:at] + bytes([rec[at] ^ 1]) + rec[at + 1 :], rel))


def _same_length_edit(db: sqlite3.Connection) -> None:
    rel, rec = db.execute(NEWEST).fetchone()
    at = rec.index(b"https://") + 8
    db.execute("UPDATE files SET rec=? WHERE rel=?", (rec[:at] + b"evil" + rec[at + 4 :], rel))


def _garbage_scan(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET value=? WHERE key='scan'", (b"\x00garbage\xff" * 10,))


def _longer_record(db: sqlite3.Connection) -> None:
    rel, rec = db.execute(NEWEST).fetchone()
    db.execute("UPDATE files SET rec=? WHERE rel=?", (rec + b"\x00\x01", rel))


def _not_utf8(db: sqlite3.Connection) -> None:
    db.execute("UPDATE files SET problems=NULL, id=CAST(x'fffe41' AS TEXT) WHERE rel=(SELECT max(rel) FROM files)")


def _truncated(db: sqlite3.Connection) -> None:
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = db.execute("PRAGMA database_list").fetchone()[2]
    db.close()
    with open(path, "r+b") as f:
        f.truncate(4096 * max(2, pages // 2))


SQL_DAMAGE: dict[str, Callable[[sqlite3.Connection], None]] = {
    "a flipped byte in a cached record": _flip_in_a_record,
    "a same-length edit of a cached record": _same_length_edit,
    "a garbage scan blob": _garbage_scan,
    "a cached record whose length changed": _longer_record,
    "text that is not UTF-8": _not_utf8,
    "a cache cut short": _truncated,
}


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    records = tmp_path / "records"
    synth.write_corpus(records, 120, seed=3)
    config_path = write_config(
        tmp_path / "config.yaml", records, settings={"archives": {"enabled": True, "page_size": 5}, "max_entries": 10}
    )
    assert CliRunner().invoke(main, ["--config", str(config_path), "build"]).exit_code == 0
    return config_path, records


def _build_after_a_change(tmp_path: Path, config_path: Path, records: Path) -> str:
    """Change an unrelated record, build with the command, expect a clean full build's bytes; its output."""
    first = sorted(records.iterdir())[-1]  # so the build has work to do with the damaged cache
    first.write_text(first.read_text(encoding="utf-8").replace("title: ", "title: Changed ", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config_path), "build"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    config = load_config(config_path)
    fresh = tmp_path / "fresh"
    incremental.build(dataclasses.replace(config, output_dir=fresh), fresh, full=True)
    assert tree(config.output_dir) == tree(fresh), result.output
    shutil.rmtree(fresh)
    return result.output


def _check_next_build(tmp_path: Path, config_path: Path, records: Path) -> None:
    output = _build_after_a_change(tmp_path, config_path, records)
    cache = incremental.default_cache_path(load_config(config_path).output_dir)
    assert "cannot be trusted" in output and str(cache) in output
    # And the build after that trusts the new cache: no warning.
    again = CliRunner().invoke(main, ["--config", str(config_path), "build"])
    assert again.exit_code == 0 and "cannot be trusted" not in again.output


@pytest.mark.parametrize("case", sorted(SQL_DAMAGE))
def test_a_damaged_cache_is_set_aside_and_the_build_is_full(tmp_path: Path, site: tuple[Path, Path], case: str) -> None:
    config_path, records = site
    cache = incremental.default_cache_path(load_config(config_path).output_dir)
    db = sqlite3.connect(cache, isolation_level=None)
    SQL_DAMAGE[case](db)
    try:
        db.close()
    except sqlite3.Error:
        pass
    _check_next_build(tmp_path, config_path, records)


@pytest.mark.parametrize("seed", range(12))
def test_random_damage_to_the_file_never_ends_in_a_traceback(
    tmp_path: Path, site: tuple[Path, Path], seed: int
) -> None:
    config_path, records = site
    cache = incremental.default_cache_path(load_config(config_path).output_dir)
    for suffix in ("-wal", "-shm"):
        Path(str(cache) + suffix).unlink(missing_ok=True)
    data = bytearray(cache.read_bytes())
    rng = random.Random(seed)
    # Page headers and b-tree structure, not the free space: damage SQLite notices.
    for _ in range(40):
        at = rng.randrange(100, len(data))
        data[at] ^= 1 << rng.randrange(8)
    cache.write_bytes(bytes(data))
    _build_after_a_change(tmp_path, config_path, records)


def test_records_kept_decoded_for_archive_pages_are_checked_like_the_rest(tmp_path: Path) -> None:
    """`Archives` keeps decoded records by their bytes and checksum: the same bytes with a checksum
    that no longer matches are refused, however often they were decoded before."""
    synth.write_corpus(tmp_path, 1, seed=3)
    (path,) = tmp_path.glob("*.txt")
    loaded = load_file(tmp_path, path.name, settings_for(Config()))
    assert loaded.record is not None
    rec = codec.encode(loaded.record)
    archives = Archives(sqlite3.connect(":memory:"))
    first = archives._decode(rec, rows.rec_sum(rec))
    assert first == loaded.record and archives._decode(rec, rows.rec_sum(rec)) is first
    with pytest.raises(rows.CacheDamaged):
        archives._decode(rec, rows.rec_sum(rec) ^ 1)
    with pytest.raises(rows.CacheDamaged):
        archives._decode(rec[:-1] + bytes([rec[-1] ^ 1]), rows.rec_sum(rec))
