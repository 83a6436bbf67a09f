"""RFC 5005 archive pages: the paging rule, the documents, the chain a reader walks.

A reader that subscribes to a feed follows rel="prev-archive" from the
subscription document to the oldest page and must find every entry of the
feed exactly once, over HTTP from `feedsvc serve` (with the immutable
Cache-Control on pages) and in the files `feedsvc build` writes. Pages fill
from the oldest entry, so a newer record never changes a page's bytes. The
web app renders no page: it sends the files the build wrote.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import pytest

from conftest import rebuild, served_app
from feedsvc import incremental
from feedsvc.archives import Paging, split
from feedsvc.config import ArchivesConfig, Config
from feedsvc.feeds import select, topic_keys
from feedsvc.model import FeedKind
from feedsvc.render import FH_NS
from feedsvc.site import build as build_in_memory
from feedsvc.records import load_records
from feedsvc.synth import write_corpus
from servers import Server, free_port, write_config

MAX_ENTRIES = 6
PAGE_SIZE = 4
BASE = "http://127.0.0.1:8000/"
IMMUTABLE = "public, max-age=31536000, immutable"

# --- The paging rule --------------------------------------------------------------

#: (entries N, max_entries M, page_size P) → (archive pages, entries in the subscription document).
PAGING_CASES = {
    "empty": ((0, 5, 2), (0, 0)),
    "fewer than max": ((3, 5, 2), (0, 3)),
    "exactly max": ((5, 5, 2), (0, 5)),
    "one over max": ((6, 5, 2), (1, 4)),
    "pages fill exactly": ((9, 5, 2), (2, 5)),
    "one past a full page": ((10, 5, 2), (3, 4)),
    "page size = max": ((10, 5, 5), (1, 5)),
    "page size = max, one over": ((11, 5, 5), (2, 1)),
    "page size 1": ((8, 5, 1), (3, 5)),
    "page size 1, large": ((1000, 50, 1), (950, 50)),
    "defaults at 100k": ((100_000, 50, 25), (3998, 50)),
}


@pytest.mark.parametrize(("args", "expected"), PAGING_CASES.values(), ids=PAGING_CASES.keys())
def test_the_paging_arithmetic(args: tuple[int, int, int], expected: tuple[int, int]) -> None:
    total, max_entries, page_size = args
    paging = Paging(max_entries, page_size)
    assert (paging.pages(total), paging.current(total)) == expected
    current, pages = split(list(range(total, 0, -1)), paging)  # newest first: N … 1
    assert len(current) == expected[1] and len(pages) == expected[0]
    assert all(len(page) == page_size for page in pages)  # never a partial page
    if pages:
        assert max_entries - page_size + 1 <= len(current) <= max_entries
        assert pages[0] == tuple(range(page_size, 0, -1))  # page 1: the oldest, newest first
    # Every entry in exactly one document, in the feed's own order.
    assert [n for doc in (current, *reversed(pages)) for n in doc] == list(range(total, 0, -1))


@pytest.mark.parametrize("page_size", [1, 2, 3, 5])
def test_a_newer_entry_never_moves_an_archived_one(page_size: int) -> None:
    paging = Paging(5, page_size)
    before: list[tuple[int, ...]] = []
    for total in range(40):
        _current, pages = split(list(range(total, 0, -1)), paging)
        assert pages[: len(before)] == before
        assert len(pages) - len(before) in (0, 1)
        before = pages


def test_archives_off_is_the_plain_cap() -> None:
    paging = Paging.from_config(dataclasses.replace(Config(), archives=ArchivesConfig(enabled=False), max_entries=5))
    assert (paging.pages(100), paging.current(100)) == (0, 5)
    assert Paging.from_config(Config()).page_size == 0  # off unless asked for
    on = ArchivesConfig(enabled=True)  # page_size 25, set in code
    capped = Paging.from_config(dataclasses.replace(Config(), archives=on, max_entries=10))
    assert capped.page_size == 10


# --- The documents ---------------------------------------------------------------


@pytest.fixture
def records_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    write_corpus(folder, 60, seed=7, topics=5, providers=4)
    return folder


def small_config(records_dir: Path, out: Path, **changes: Any) -> Config:
    settings: dict[str, Any] = {"archives": ArchivesConfig(enabled=True, page_size=PAGE_SIZE), **changes}
    return dataclasses.replace(
        Config(), records_dir=records_dir, output_dir=out, include_unpublished=True, max_entries=MAX_ENTRIES, **settings
    )


def xml_links(data: bytes) -> dict[str, str]:
    """rel → href of the feed-level links (Atom links, or atom:link in an RSS channel)."""
    root = ElementTree.fromstring(data)
    parent = root.find("channel") if root.tag == "rss" else root
    assert parent is not None
    tag = "{http://www.w3.org/2005/Atom}link"
    return {link.get("rel", "alternate"): link.get("href", "") for link in parent.findall(tag)}


def is_archive(data: bytes) -> bool:
    root = ElementTree.fromstring(data)
    parent = root.find("channel") if root.tag == "rss" else root
    assert parent is not None
    return parent.find(f"{{{FH_NS}}}archive") is not None


def test_pages_and_the_subscription_document_link_up(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out", websub=dataclasses.replace(Config().websub, hubs=("https://hub.example/",)))
    site = build_in_memory(config)
    docs = site.documents
    feed = next(f for f in site.feeds if f.key.kind is FeedKind.ALL)
    assert feed.archives == -(-(60 - MAX_ENTRIES) // PAGE_SIZE)
    for fmt in ("atom", "rss"):
        sub = docs[f"feeds/all.{fmt}"].body
        assert xml_links(sub)["prev-archive"] == f"{BASE}feeds/all/archive/{feed.archives}.{fmt}"
        assert xml_links(sub)["current"] == xml_links(sub)["self"] == f"{BASE}feeds/all.{fmt}"
        assert not is_archive(sub) and "hub" in xml_links(sub)
        for n in (1, 2):
            page = docs[f"feeds/all/archive/{n}.{fmt}"]
            assert page.immutable and not docs[f"feeds/all.{fmt}"].immutable
            links = xml_links(page.body)
            assert links["self"] == f"{BASE}feeds/all/archive/{n}.{fmt}"
            assert links["current"] == f"{BASE}feeds/all.{fmt}"
            assert ("prev-archive" in links) == (n > 1) and "next-archive" not in links and "hub" not in links
            if n > 1:
                assert links["prev-archive"] == f"{BASE}feeds/all/archive/{n - 1}.{fmt}"
            assert is_archive(page.body)
            parsed = feedparser.parse(page.body)
            assert not parsed.bozo and len(parsed.entries) == PAGE_SIZE
            assert parsed.feed.title.endswith(f" (archive {n})")
            assert parsed.feed.link == f"{BASE}feeds/all.html"  # the feed's HTML page, as the feed has
            if fmt == "atom":  # one logical feed: the subscription document's id
                assert parsed.feed.id == feedparser.parse(sub).feed.id == f"{BASE}feeds/all"
                newest = max(datetime(*e.updated_parsed[:6], tzinfo=timezone.utc) for e in parsed.entries)
                assert page.last_modified is not None and abs((page.last_modified - newest).total_seconds()) < 1
    # JSON Feed and the HTML page show what the subscription documents show.
    sub_ids = [e.id for e in feedparser.parse(docs["feeds/all.atom"].body).entries]
    json_ids = [item["id"] for item in __import__("json").loads(docs["feeds/all.json"].body)["items"]]
    assert json_ids == sub_ids and len(sub_ids) == len(feed.entries)


def test_without_archives_nothing_changes(records_dir: Path, tmp_path: Path) -> None:
    off = build_in_memory(small_config(records_dir, tmp_path, archives=ArchivesConfig(enabled=False)))
    assert not [p for p in off.documents if "/archive/" in p]
    body = off.documents["feeds/all.atom"].body
    assert b"prev-archive" not in body and FH_NS.encode() not in body
    assert len(feedparser.parse(body).entries) == MAX_ENTRIES


# --- Walking the chain ----------------------------------------------------------------


def expected_members(records_dir: Path, config: Config) -> dict[str, set[str]]:
    """Feed path → entry ids, from the records and the membership rules (not from the feeds)."""
    chosen = select(load_records(records_dir, config).records, config).records
    members: dict[str, set[str]] = {"feeds/all": {r.id for r in chosen}}
    for r in chosen:
        members.setdefault(f"feeds/providers/{r.provider.domain}", set()).add(r.id)
        for slug, _name in topic_keys(r):
            members.setdefault(f"feeds/topics/{slug}", set()).add(r.id)
    return members


def walk(fetch: Callable[[str], bytes], start: str) -> tuple[list[str], list[str]]:
    """Follow rel="prev-archive" from `start` (a URL); (URLs fetched, entry ids in the order met)."""
    urls, ids = [], []
    url: str | None = start
    while url is not None:
        assert url not in urls, f"a loop back to {url}"
        urls.append(url)
        data = fetch(url)
        parsed = feedparser.parse(data)
        assert not parsed.bozo, (url, parsed.get("bozo_exception"))
        assert is_archive(data) == (len(urls) > 1), url
        ids += [e.id for e in parsed.entries]
        url = xml_links(data).get("prev-archive")
    return urls, ids


def assert_every_record_once(fetch: Callable[[str], bytes], members: dict[str, set[str]]) -> int:
    pages = 0
    for path, ids in sorted(members.items()):
        for fmt in ("atom", "rss"):
            urls, got = walk(fetch, f"{BASE}{path}.{fmt}")
            assert len(got) == len(set(got)) == len(ids), (path, fmt)
            assert set(got) == ids, (path, fmt)
            assert urls[1:] == [f"{BASE}{path}/archive/{n}.{fmt}" for n in range(len(urls) - 1, 0, -1)]
            pages += len(urls) - 1
    return pages


@pytest.fixture
def server(records_dir: Path, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = {"max_entries": MAX_ENTRIES, "archives": {"enabled": True, "page_size": PAGE_SIZE}, "site": {"title": "t", "base_url": BASE}}
    config = write_config(tmp_path / "config.yaml", records_dir, settings=settings, port=port, workers=1, cache_max_age=60)
    server = Server(config, port, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_chain_over_http_holds_every_record_once(server: Server, records_dir: Path, tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    def fetch(url: str) -> bytes:
        path = url.removeprefix(BASE)
        r = server.get("/" + path, headers={"Accept-Encoding": "gzip"})
        assert r.status == 200, url
        seen[path] = r.header("Cache-Control") or ""
        again = server.get("/" + path, headers={"Accept-Encoding": "gzip", "If-None-Match": r.header("ETag") or ""})
        assert again.status == 304 and again.header("Cache-Control") == seen[path]
        assert r.header("Content-Encoding") == "gzip" and r.header("Last-Modified")
        import gzip

        return gzip.decompress(r.body)

    config = small_config(records_dir, tmp_path / "unused")
    pages = assert_every_record_once(fetch, expected_members(records_dir, config))
    assert pages > 20
    assert {c for p, c in seen.items() if "/archive/" in p} == {IMMUTABLE}
    assert {c for p, c in seen.items() if "/archive/" not in p} == {"public, max-age=60"}
    # An archive page ignores a query (it is never a custom feed); a page past the last is 404.
    assert server.get("/feeds/all/archive/1.atom?limit=2").body == server.get("/feeds/all/archive/1.atom").body
    assert server.get("/feeds/all/archive/999.atom").status == 404


def test_the_chain_in_the_static_files_holds_every_record_once(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)

    def fetch(url: str) -> bytes:
        return (config.output_dir / url.removeprefix(BASE)).read_bytes()

    assert assert_every_record_once(fetch, expected_members(records_dir, config)) > 20
    for page in (config.output_dir / "feeds/all/archive").iterdir():
        assert page.suffix in (".atom", ".rss", ".gz")


# --- Stability ------------------------------------------------------------------------


def add_record(records_dir: Path, n: int, when: datetime) -> None:
    (records_dir / f"zz_added_{n:03d}.txt").write_text(
        f'---\ntitle: "Added {n}"\nwebUrl: "https://added.example.com/{n}"\n'
        f"publishedDateTime: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}\ntopics: [Added]\n---\n",
        encoding="utf-8",
    )


def pages_of(out: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("archive/*")) if p.is_file()
    }  # fmt: skip


def test_newer_records_never_change_a_page(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)
    before = pages_of(config.output_dir)
    newest = datetime(2030, 1, 1, tzinfo=timezone.utc)
    added_pages = 0
    for n in range(PAGE_SIZE + 1):
        add_record(records_dir, n, newest + timedelta(hours=n))
        report = incremental.build(config)
        after = pages_of(config.output_dir)
        assert {p: after[p] for p in before} == before  # same bytes, not even rewritten
        new = sorted(after.keys() - before.keys())
        assert all("archive" in p for p in new)
        # Only the new pages were rendered.
        assert sorted(p for p in report.changes.documents if "/archive/" in p) == sorted(p for p in new if not p.endswith(".gz"))
        added_pages += len(new)
        before = after
    assert added_pages > 0  # feeds/all and the new topic filled a page on the way


def files_of(out: Path) -> dict[str, bytes]:
    """Every document file of an output folder (not the .gz copies, not the build's own hidden files)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.suffix != ".gz" and not p.name.startswith(".")
    }


def test_a_rebuild_renders_only_the_pages_that_changed(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)
    old_pages = {p for p in build_in_memory(config).documents if "/archive/" in p}
    for n in range(PAGE_SIZE):  # enough for feeds/all to cut a new page
        add_record(records_dir, n, datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(hours=n))
    report = rebuild(config)
    rendered = set(report.changes.documents)
    assert rendered and not rendered & old_pages  # no old page was rendered again
    expected = build_in_memory(config).documents
    assert any("/archive/" in p for p in rendered)  # the new page
    assert {p for p in expected if "/archive/" in p} - old_pages <= rendered
    # …and the folder is exactly what a whole build in memory makes.
    assert files_of(config.output_dir) == {p: d.body for p, d in expected.items()}


@contextmanager
def nothing_rendered() -> Iterator[None]:
    """Rendering a feed or an archive page in this process fails the test, while inside."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the web app rendered a document")

    with pytest.MonkeyPatch.context() as patch:
        for module in ("feedsvc.site", "feedsvc.incremental"):
            patch.setattr(f"{module}.archive_documents", fail)
        for name in ("render_archive", "render_feed"):
            patch.setattr(f"feedsvc.site.{name}", fail)
        yield


def assert_page_served(client: Any, out: Path, path: str, body: bytes, last_modified: datetime | None) -> str:
    """`path` is sent from its files with a page's headers; its plain ETag."""
    plain = client.get("/" + path)
    zipped = client.get("/" + path, headers={"Accept-Encoding": "gzip"})
    assert plain.status_code == zipped.status_code == 200, path
    assert plain.data == body == (out / path).read_bytes()
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert zipped.data == (out / f"{path}.gz").read_bytes() and gzip.decompress(zipped.data) == body
    feed = path.split("/archive/")[0] + "." + path.rsplit(".", 1)[1]
    assert last_modified is not None
    for r in (plain, zipped):
        assert r.headers["Cache-Control"] == IMMUTABLE
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Content-Type"] == client.get("/" + feed).headers["Content-Type"]  # as its feed's
        assert r.headers["Last-Modified"] == format_datetime(last_modified.astimezone(timezone.utc), usegmt=True)
        again = client.get("/" + path, headers={"If-None-Match": r.headers["ETag"], "Accept-Encoding": r.headers.get("Content-Encoding", "")})
        assert again.status_code == 304 and again.data == b"" and again.headers["Cache-Control"] == IMMUTABLE
        assert again.headers["ETag"] == r.headers["ETag"]
    assert plain.headers["ETag"] != zipped.headers["ETag"]
    assert int(plain.headers["Content-Length"]) == len(body)
    head = client.head("/" + path)
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Length"] == str(len(body))
    assert client.get(f"/{path}?limit=2").data == body  # a page ignores a query
    return str(plain.headers["ETag"])


def test_the_web_app_serves_pages_from_the_files_the_build_wrote(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    client = served_app(config).test_client()
    expected = build_in_memory(config).documents
    pages = sorted(p for p in expected if "/archive/" in p)
    assert len(pages) > 20
    with nothing_rendered():
        etags = {p: assert_page_served(client, config.output_dir, p, expected[p].body, expected[p].last_modified) for p in pages}
        assert client.get("/feeds/all/archive/999.atom").status_code == 404
        assert client.get("/feeds/all/archive/0.atom").status_code == 404
    stamps = {p: (config.output_dir / p).stat().st_mtime_ns for p in pages}

    # A build with newer records: every old page keeps its file and its validators,
    # and the new pages are served the same way.
    for n in range(PAGE_SIZE):
        add_record(records_dir, n, datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(hours=n))
    rebuild(config)
    reference = build_in_memory(config).documents
    later = sorted(p for p in reference if "/archive/" in p)
    assert set(pages) < set(later)
    with nothing_rendered():
        for p in pages:
            assert (config.output_dir / p).stat().st_mtime_ns == stamps[p], p  # not even rewritten
            assert client.get("/" + p, headers={"If-None-Match": etags[p]}).status_code == 304, p
        for p in later:
            assert_page_served(client, config.output_dir, p, reference[p].body, reference[p].last_modified)
