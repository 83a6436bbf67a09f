"""Incremental builds give exactly the bytes of a full build, doing only the needed work.

Each scenario changes a records folder (add, change, delete, move between
topics, unpublish, duplicate, rename, touch), builds incrementally on top of
the previous build, and compares every output file with a full build from
scratch into a fresh folder with a fresh cache.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feedsvc.build import incremental, refresh, render
from feedsvc.build.write import MANIFEST, files_for, staging_path
from feedsvc.config import ArchivesConfig, Config
from feedsvc.feeds.archives import FIRST
from feedsvc.formats.documents import build_in_memory
from feedsvc.synth import write_corpus

RECORDS = 120


@pytest.fixture
def config(tmp_path: Path) -> Config:
    records = tmp_path / "records"
    write_corpus(records, RECORDS, seed=5, topics=12, providers=30)
    return dataclasses.replace(
        Config(),
        records_dir=records,
        output_dir=tmp_path / "out",
        include_unpublished=False,
        max_entries=10,
        archives=ArchivesConfig(enabled=True, page_size=10),
    )


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def full_build(config: Config, where: Path) -> dict[str, bytes]:
    report = incremental.build(config, where / "out", cache=where / "cache.sqlite", full=True)
    assert report.changes.parsed == report.changes.files
    return snapshot(where / "out")


def files(config: Config) -> list[Path]:
    return sorted(config.records_dir.glob("*.txt"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _copy_as_new_article(config: Config, name: str, published: str, host: str) -> None:
    """A new file: the newest record under other URLs (another article), published then."""
    text = _newest_published(config).read_text(encoding="utf-8")
    text = re.sub(r"(?m)^publishedDateTime: .*$", f"publishedDateTime: {published}", text)
    (config.records_dir / name).write_text(text.replace('Url: "https://', f'Url: "https://{host}.'), encoding="utf-8")


def _add(config: Config) -> None:
    _copy_as_new_article(config, "zzz_new.txt", "2029-06-01T00:00:00Z", "new")


def _change_title(config: Config) -> None:
    path = _newest_published(config)
    edit(path, 'title: "', 'title: "Changed: ')


def _delete(config: Config) -> None:
    _newest_published(config).unlink()


def _move_topic(config: Config) -> None:
    path = _newest_published(config)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("topics:\n", 1)
    items = rest.split("\n\n", 1)
    path.write_text(
        head + 'topics:\n  - "A Brand New Topic"\n' + ("\n\n" + items[1] if len(items) > 1 else ""), encoding="utf-8"
    )


def _unpublish(config: Config) -> None:
    edit(_newest_published(config), "published: true", "published: false")


def _duplicate_newer(config: Config) -> None:
    source = _newest_published(config)
    copy = config.records_dir / "aaa_copy.txt"
    shutil.copy(source, copy)
    edit(copy, 'title: "', 'title: "Corrected: ')
    edit(copy, "publishedDateTime:", "updatedDateTime: 2099-01-01T00:00:00Z\npublishedDateTime:")


def _rename(config: Config) -> None:
    path = _newest_published(config)
    path.rename(path.with_name("renamed.txt"))


def _break(config: Config) -> None:
    edit(_newest_published(config), "publishedDateTime:", "publishedDateTime: not a date\nx:")


def _backdate(config: Config) -> None:
    """A record older than every other: it joins the first page of the feeds it is in."""
    _copy_as_new_article(config, "zzz_old.txt", "1999-06-01T00:00:00Z", "old")


def _change_oldest(config: Config) -> None:
    """A title change on the first (oldest) archive page of the all feed."""
    loaded = build_in_memory(config)
    oldest = next(page for (key, name), page in loaded.pages.items() if key.slug == "all" and name == FIRST)
    edit(config.records_dir / oldest.entries[-1].path, 'title: "', 'title: "Changed: ')


def _newest_published(config: Config) -> Path:
    loaded = build_in_memory(config)
    newest = loaded.feeds[0].entries[0]  # the all-feed comes first
    return config.records_dir / newest.path


SCENARIOS: dict[str, Callable[[Config], None]] = {
    "add": _add,
    "change": _change_title,
    "delete": _delete,
    "move-topic": _move_topic,
    "unpublish": _unpublish,
    "duplicate": _duplicate_newer,
    "rename": _rename,
    "break": _break,
    "backdate": _backdate,
    "change-archived": _change_oldest,
}


def test_a_full_build_equals_the_in_memory_site(config: Config) -> None:
    incremental.build(config)
    expected = files_for(build_in_memory(config).documents)
    got = snapshot(config.output_dir)
    got.pop(MANIFEST)
    assert got == expected


def test_deleting_the_only_record_of_a_feed_is_an_incremental_build(config: Config, tmp_path: Path) -> None:
    """The feed is gone, pages and all, without the cache being taken for damaged and rebuilt from scratch."""
    only = config.records_dir / "zzz_only.txt"
    only.write_text(
        "---\ntitle: The only story of its source\npublishedDateTime: 2026-01-01T00:00:00Z\n"
        "originalUrl: https://only.example/story\nwebUrl: https://only.example/story\npublished: true\n"
        "provider:\n  name: Only\n  domain: only.example\ntopics: [Only Here]\n---\n",
        encoding="utf-8",
    )
    incremental.build(config)
    only.unlink()
    report = incremental.build(config)
    assert (report.changes.parsed, report.changes.removed_files) == (0, 1)
    assert "feeds/providers/only.example.atom" in report.changes.removed_paths
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


def test_pages_of_entries_published_at_one_instant_equal_the_in_memory_site(config: Config) -> None:
    """Every record published at the same second: page boundaries fall between ties, broken by id.

    A page's entries are read from its newest entry on (`store.FROM_ENTRY`),
    not by position; with every date equal, only the id orders them.
    """
    for path in files(config):
        text = path.read_text(encoding="utf-8")
        path.write_text(
            re.sub(r"(?m)^publishedDateTime: .*$", "publishedDateTime: 2026-01-01T00:00:00Z", text), encoding="utf-8"
        )
    config = dataclasses.replace(config, archives=ArchivesConfig(enabled=True, page_size=3))
    report = incremental.build(config)
    assert len(_archive_paths(report)) > 40
    expected = files_for(build_in_memory(config).documents)
    got = snapshot(config.output_dir)
    got.pop(MANIFEST)
    assert got == expected


@pytest.mark.parametrize("name", SCENARIOS)
def test_an_incremental_build_equals_a_full_one(name: str, config: Config, tmp_path: Path) -> None:
    first = incremental.build(config)
    assert first.changes.parsed == RECORDS
    SCENARIOS[name](config)
    report = incremental.build(config)
    assert report.changes.parsed <= 1
    # Only the feeds the change touches are rendered again.
    assert 0 < report.changes.feeds_rendered <= 8 < report.changes.feeds
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")
    assert snapshot(config.output_dir) != {}


def _archive_paths(report: incremental.BuildReport) -> list[str]:
    return sorted(p for p in report.changes.documents if "/archive/" in p)


def _pages_per_feed(report: incremental.BuildReport) -> dict[str, set[str]]:
    """Feed path → the names of its archive pages the build rendered (each in RSS and Atom)."""
    pages: dict[str, set[str]] = {}
    for path in _archive_paths(report):
        feed, name = path.rsplit("/archive/", 1)
        pages.setdefault(feed, set()).add(name.rsplit(".", 1)[0])
    assert sum(map(len, pages.values())) * 2 == len(_archive_paths(report))
    return pages


def test_archive_pages_are_rendered_only_when_their_entries_change(config: Config, tmp_path: Path) -> None:
    first = incremental.build(config)
    assert len(_archive_paths(first)) > 20  # the first build writes every page
    _add(config)  # newest: the feeds' newest pages take their oldest entry, at most one new page each
    assert max(map(len, _pages_per_feed(incremental.build(config)).values()), default=0) <= 2
    _change_oldest(config)  # one page in each feed the record is in, at most
    changed = _archive_paths(incremental.build(config))
    feeds = {p.rsplit("/archive/", 1)[0] for p in changed}
    assert f"feeds/all/archive/{FIRST}.atom" in changed and len(changed) == 2 * len(feeds) <= 16
    _backdate(config)  # older than every page: the first page of each of its feeds, and perhaps the next
    backdated = _pages_per_feed(incremental.build(config))
    assert FIRST in backdated["feeds/all"] and max(map(len, backdated.values())) <= 3
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


def _build_dies_before_writing(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a build that fails when it comes to write the files (a full disk, say)."""

    def dies(*args: object, **kwargs: object) -> object:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(incremental, "publish_files", dies)
        with pytest.raises(OSError):
            incremental.build(config)


def test_a_build_that_dies_before_writing_pages_writes_them_next_time(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental.build(config)
    _change_oldest(config)
    _build_dies_before_writing(config, monkeypatch)
    report = incremental.build(config)
    # The digests staged by the build that died were never promoted: the page is rendered again.
    assert f"feeds/all/archive/{FIRST}.atom" in _archive_paths(report)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")
    assert _archive_paths(incremental.build(config)) == []


def test_a_rebuild_with_nothing_changed_writes_nothing(config: Config) -> None:
    incremental.build(config)
    before = mtimes(config.output_dir)
    report = incremental.build(config)
    assert (report.changes.parsed, report.changes.feeds_rendered, report.published.written) == (0, 0, 0)
    assert mtimes(config.output_dir) == before


def test_a_touched_file_is_recognised_by_its_content(config: Config) -> None:
    incremental.build(config)
    before = mtimes(config.output_dir)
    path = files(config)[3]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    report = incremental.build(config)
    assert (report.changes.parsed, report.published.written) == (0, 0)
    assert mtimes(config.output_dir) == before


def test_a_build_that_dies_half_way_is_done_again(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental.build(config)
    _change_title(config)
    _build_dies_before_writing(config, monkeypatch)
    report = incremental.build(config)
    # The change was cached; the feeds it touched were left pending and are rendered now.
    assert (report.changes.parsed, report.changes.feeds_rendered) == (0, 4)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")
    assert incremental.build(config).changes.feeds_rendered == 0


def test_a_damaged_cache_is_rebuilt(config: Config, tmp_path: Path) -> None:
    incremental.build(config)
    cache = incremental.default_cache_path(config.output_dir)
    for suffix in ("-wal", "-shm"):
        Path(str(cache) + suffix).unlink(missing_ok=True)
    cache.write_bytes(b"not a database" * 100)
    report = incremental.build(config)
    assert report.changes.parsed == RECORDS
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


def test_a_config_change_renders_everything_again(config: Config, tmp_path: Path) -> None:
    incremental.build(config)
    retitled = dataclasses.replace(config, site=dataclasses.replace(config.site, title="Another title"))
    report = incremental.build(retitled)
    assert report.changes.feeds_rendered == report.changes.feeds
    assert snapshot(config.output_dir) == full_build(retitled, tmp_path / "fresh")


def test_a_deleted_output_folder_is_written_again(config: Config, tmp_path: Path) -> None:
    incremental.build(config)
    shutil.rmtree(config.output_dir)
    incremental.build(config)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


def test_parallel_parsing_gives_the_same_output(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refresh, "PARALLEL_MIN", 1)
    report = incremental.build(config, tmp_path / "parallel", cache=tmp_path / "p.sqlite", workers=2)
    assert report.changes.parsed == RECORDS
    monkeypatch.setattr(refresh, "PARALLEL_MIN", 10**9)
    assert snapshot(tmp_path / "parallel") == full_build(config, tmp_path / "fresh")


def test_the_cache_lives_beside_the_output_not_in_it(config: Config) -> None:
    incremental.build(config)
    cache = incremental.default_cache_path(config.output_dir)
    assert cache.is_file() and config.output_dir not in cache.parents
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == RECORDS
    assert not any(".sqlite" in name for name in snapshot(config.output_dir))


def test_problems_are_reported_on_every_build(config: Config) -> None:
    _break(config)
    first = incremental.build(config)
    again = incremental.build(config)
    assert [str(p) for p in first.problems] == [str(p) for p in again.problems]
    assert again.rejected == first.rejected == 1


def test_the_fingerprint_follows_the_templates_and_ignores_serving_settings(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import shutil

    from feedsvc.config import PoliteConfig, QueriesConfig
    from feedsvc.formats import html

    templates = tmp_path / "templates"
    shutil.copytree(str(html.TEMPLATES), templates)
    monkeypatch.setattr(html, "TEMPLATES", templates)
    incremental.templates_digest.cache_clear()
    before = incremental.fingerprint(config)
    # Settings no document shows: a cache built with other ones is as good.
    other = dataclasses.replace(config, polite=PoliteConfig(max_requests=7), queries=QueriesConfig(cache_entries=3))
    assert incremental.fingerprint(other) == before
    # An edited template changes every page: the cache must not claim they are current.
    style = templates / "style.css"
    style.write_bytes(style.read_bytes() + b"\n/* edited */\n")
    incremental.templates_digest.cache_clear()
    try:
        assert incremental.fingerprint(config) != before
    finally:
        incremental.templates_digest.cache_clear()


# -- rendered in worker processes, written through the staging folder --------------------------------


@pytest.fixture
def in_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every render in worker processes (as a big build does), each writing its files into the staging folder."""
    monkeypatch.setattr(render, "PARALLEL_FEEDS", 1)


def _built_by_workers(config: Config, out: Path | None = None) -> incremental.BuildReport:
    report = incremental.build(config, out, workers=2)
    assert not staging_path(out or config.output_dir).exists()  # removed once the files are in place
    return report


@pytest.mark.usefixtures("in_workers")
def test_a_build_rendered_by_workers_equals_the_in_memory_site(config: Config) -> None:
    report = _built_by_workers(config)
    expected = files_for(build_in_memory(config).documents)
    got = snapshot(config.output_dir)
    got.pop(MANIFEST)
    assert got == expected
    assert all(doc.body == b"" for doc in report.changes.documents.values())  # the build process kept no bytes


@pytest.mark.usefixtures("in_workers")
@pytest.mark.parametrize("name", ["add", "change", "delete", "backdate"])
def test_an_incremental_build_by_workers_equals_a_full_one(name: str, config: Config, tmp_path: Path) -> None:
    _built_by_workers(config)
    before = mtimes(config.output_dir)
    SCENARIOS[name](config)
    report = _built_by_workers(config)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")
    after = mtimes(config.output_dir)
    untouched = {p for p in before.keys() & after.keys() if before[p] == after[p]}
    written = {p for p in after if p not in untouched}
    # A staged file is renamed into place only when its bytes changed: the rest keep their mtimes.
    assert written <= {*report.published.files, MANIFEST} and len(untouched) > len(written)


@pytest.mark.usefixtures("in_workers")
def test_a_staging_folder_left_by_a_build_that_died_is_emptied_first(config: Config, tmp_path: Path) -> None:
    staging = staging_path(config.output_dir)
    (staging / "feeds").mkdir(parents=True)
    (staging / "feeds" / "all.atom").write_bytes(b"half a feed")  # where a worker will write
    (staging / "stray.txt").write_bytes(b"left over")
    _built_by_workers(config)
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


@pytest.mark.usefixtures("in_workers")
def test_a_link_where_the_staging_folder_goes_is_never_followed(config: Config, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_bytes(b"not feedsvc's")
    config.output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging_path(config.output_dir).symlink_to(elsewhere, target_is_directory=True)
    _built_by_workers(config)
    assert snapshot(elsewhere) == {"keep.txt": b"not feedsvc's"}
    assert snapshot(config.output_dir) == full_build(config, tmp_path / "fresh")


@pytest.fixture
def mounted_out(tmp_path: Path) -> Iterator[Path]:
    """An output folder that is a file system of its own (a tmpfs mounted there), as a volume or a mount is."""
    out = tmp_path / "mounted"
    out.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a file system here (as root in CI): {done.stderr.strip()}")
    try:
        yield out
    finally:
        subprocess.run(["umount", str(out)], check=True)


@pytest.mark.usefixtures("in_workers")
def test_an_output_folder_on_its_own_file_system_gets_every_file(config: Config, mounted_out: Path) -> None:
    """Staged files cannot be renamed across file systems: each is copied into the folder and renamed there."""
    assert os.stat(mounted_out).st_dev != os.stat(staging_path(mounted_out).parent).st_dev
    _built_by_workers(config, mounted_out)
    expected = files_for(build_in_memory(config).documents)
    got = snapshot(mounted_out)
    got.pop(MANIFEST)
    assert got == expected
    assert not [p for p in mounted_out.rglob("*.tmp")]
