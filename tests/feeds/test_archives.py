"""RFC 5005 archive pages: the boundary rule, the documents, the chain a reader walks.

A reader that subscribes to a feed follows rel="prev-archive" from the
subscription document to the first page (or rel="next-archive" from the
first page back to the subscription document) and must find every entry of
the feed exactly once, over HTTP from `feedsvc serve` and in the files
`feedsvc build` writes, before and after any sequence of adds, edits,
re-dates and deletes. Page boundaries are content-defined (`archives.layout`),
so one record's change rewrites the page that holds it and at most a page or
two beside it, and a removed record is gone from every document after the
next build. Pages are revalidated like every document (a longer max-age,
never `immutable`): their bytes can change.
"""

from __future__ import annotations

import dataclasses
import gzip
import random
import re
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import pytest
from conftest import rebuild, served_app
from servers import Server, free_port, poll, write_config

from feedsvc.build import incremental
from feedsvc.build.served import ARCHIVE_MAX_AGE
from feedsvc.config import ArchivesConfig, Config
from feedsvc.feeds.archives import FIRST, Paging, layout, mark, page_order, split, threshold
from feedsvc.feeds.rules import select, topic_keys
from feedsvc.formats import compress
from feedsvc.formats.documents import build_in_memory
from feedsvc.formats.rss_atom import FH_NS
from feedsvc.model import FeedKind
from feedsvc.records.read import load_records
from feedsvc.synth import write_corpus

MAX_ENTRIES = 6
PAGE_SIZE = 4
BASE = "http://127.0.0.1:8000/"
ARCHIVE_CACHE = f"public, max-age={ARCHIVE_MAX_AGE}"
NAME = re.compile(r"^(first|\d{8}-[0-9a-f]{8}(-\d+)?)$")

# --- The boundary rule --------------------------------------------------------------


def entries(n: int, seed: int = 1) -> list[tuple[str, int]]:
    """`n` entries oldest first: (id, published microseconds), an hour apart."""
    rnd = random.Random(seed)
    start = 1_700_000_000 * 10**6
    return [(f"urn:uuid:{rnd.getrandbits(128):032x}", start + i * 3_600 * 10**6) for i in range(n)]


def pages_of_layout(
    items: list[tuple[str, int]], paging: Paging
) -> dict[str, tuple[tuple[str, ...], str | None, str | None]]:
    """name → (entry ids, prev, next): what a page's bytes depend on."""
    return {s.name: (tuple(i for i, _ in items[s.start : s.stop]), s.prev, s.next) for s in layout(items, paging)}


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 25])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 60, 700])
def test_every_archived_entry_is_on_exactly_one_page_in_order(page_size: int, n: int) -> None:
    paging = Paging(50, page_size)
    items = entries(n, seed=n)
    spans = layout(items, paging)
    assert [i for s in spans for i in range(s.start, s.stop)] == list(range(n))  # contiguous, in order
    assert all(s.start < s.stop for s in spans)
    if n:
        assert spans[0].name == FIRST and spans[0].prev is None and spans[-1].next is None
    assert [s.prev for s in spans[1:]] == [s.name for s in spans[:-1]]
    assert [s.next for s in spans[:-1]] == [s.name for s in spans[1:]]
    assert len({s.name for s in spans}) == len(spans) and all(NAME.match(s.name) for s in spans)
    for s in spans[1:]:  # named by the first entry: its date and 32 bits of its id's hash
        day = datetime.fromtimestamp(items[s.start][1] / 1e6, UTC).strftime("%Y%m%d")
        assert s.name == f"{day}-{mark(items[s.start][0])[1]}"
    assert layout(items, paging) == spans  # a pure function


@pytest.mark.parametrize("page_size", [2, 5, 10, 25, 50])
def test_pages_average_page_size_within_min_and_max(page_size: int) -> None:
    paging = Paging(50, page_size)
    spans = layout(entries(40_000, seed=page_size), paging)
    sizes = [s.stop - s.start for s in spans]
    assert all(paging.min_size <= size <= paging.max_size for size in sizes[:-1])  # the newest may be short
    assert sizes[-1] <= paging.max_size
    assert 0.9 * page_size <= statistics.mean(sizes) <= 1.1 * page_size


def test_the_threshold_makes_every_entry_a_boundary_for_pages_of_one() -> None:
    assert threshold(1) == 1 << 64
    assert [s.stop - s.start for s in layout(entries(9), Paging(5, 1))] == [1] * 9
    assert 0 < threshold(25) < threshold(5) < threshold(2) < 1 << 64


def test_the_subscription_document_holds_the_newest_max_entries() -> None:
    newest_first = list(reversed(entries(30)))
    current, spans = split(newest_first, Paging(6, 4))
    assert current == 6 and spans[-1].stop == 24  # 30 - 6 archived, oldest first
    assert split(newest_first, Paging(6, 0)) == (6, [])  # archives off: the plain cap
    assert split(newest_first[:5], Paging(6, 4)) == (5, [])


def test_archives_off_is_the_plain_cap() -> None:
    paging = Paging.from_config(dataclasses.replace(Config(), archives=ArchivesConfig(enabled=False), max_entries=5))
    assert (paging.archived(100), paging.current(100)) == (0, 5)
    assert Paging.from_config(Config()).page_size == 0  # off unless asked for
    on = ArchivesConfig(enabled=True)  # page_size 25, set in code
    capped = Paging.from_config(dataclasses.replace(Config(), archives=on, max_entries=10))
    assert capped.page_size == 10


def _changed(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Pages of `after` that are new or whose entries or links differ: the ones a build writes."""
    return sum(1 for name, page in after.items() if before.get(name) != page)


@pytest.mark.parametrize("page_size", [2, 5, 25])
def test_one_change_rewrites_the_page_that_holds_it_and_at_most_two_more(page_size: int) -> None:
    """Wherever it falls: an insert, a delete or an edit in place writes ≤ 3 pages.

    The exception is a record inside a stretch longer than max_size without
    a natural boundary, where the forced boundaries after it move (a page or
    two more, rarely): bounded here, and counted.
    """
    paging = Paging(10**9, page_size)
    rnd = random.Random(page_size)
    base = entries(1_500, seed=page_size)
    before = pages_of_layout(base, paging)
    counts: list[int] = []
    for trial in range(900):
        changed = list(base)
        k = rnd.randrange(len(base))
        op = trial % 3
        if op == 0:  # a record added anywhere (back-dated included)
            changed.insert(k, (f"urn:uuid:new-{trial}", base[k][1]))
        elif op == 1:  # a record deleted (a takedown)
            del changed[k]
        else:  # a record edited in place: same id, same date, other bytes
            changed[k] = base[k]
        after = pages_of_layout(changed, paging)
        counts.append(_changed(before, after) if op != 2 else 1)
        # Pages away from the change are the same pages, with the same names and bytes.
        far = {n: p for n, p in before.items() if n in after and after[n] == p}
        assert len(far) >= len(before) - 4
    assert max(counts) <= 5
    assert sum(c > 3 for c in counts) <= len(counts) // 100


@pytest.mark.parametrize("page_size", [2, 5, 25])
def test_a_newer_entry_changes_at_most_the_newest_page_and_adds_one(page_size: int) -> None:
    paging = Paging(10**9, page_size)
    items = entries(500, seed=3)
    before = pages_of_layout(items[:100], paging)
    for n in range(101, 500):
        after = pages_of_layout(items[:n], paging)
        assert _changed(before, after) <= 2
        assert len(before.keys() - after.keys()) <= 1  # a short newest page merged into the one before
        before = after


def test_a_redated_entry_moves_between_two_pages() -> None:
    paging = Paging(10**9, 25)
    rnd = random.Random(9)
    base = entries(3_000, seed=9)
    before = pages_of_layout(base, paging)
    counts = []
    for _ in range(600):
        changed = list(base)
        moved = changed.pop(rnd.randrange(len(changed)))
        changed.insert(rnd.randrange(len(changed)), moved)
        counts.append(_changed(before, pages_of_layout(changed, paging)))
    assert statistics.median(counts) == 2  # the page it left and the page it joined
    assert max(counts) <= 7 and sum(c > 3 for c in counts) <= len(counts) // 5


# --- The documents ---------------------------------------------------------------


@pytest.fixture
def records_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    write_corpus(folder, 60, seed=7, topics=5, providers=4)
    return folder


def small_config(records_dir: Path, out: Path, **changes: Any) -> Config:
    settings: dict[str, Any] = {
        "archives": ArchivesConfig(enabled=True, page_size=PAGE_SIZE), "include_unpublished": True,
        "max_entries": MAX_ENTRIES, **changes,
    }  # fmt: skip
    return dataclasses.replace(Config(), records_dir=records_dir, output_dir=out, **settings)


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
    config = small_config(
        records_dir, tmp_path / "out", websub=dataclasses.replace(Config().websub, hubs=("https://hub.example/",))
    )
    site = build_in_memory(config)
    docs = site.documents
    feed = next(f for f in site.feeds if f.key.kind is FeedKind.ALL)
    pages = [site.pages[(feed.key, name)] for name in feed.pages]
    assert feed.pages[0] == FIRST and len(feed.pages) == feed.archives > 3
    assert sum(len(p.entries) for p in pages) + len(feed.entries) == 60 and len(feed.entries) == MAX_ENTRIES
    for fmt in ("atom", "rss"):
        sub = docs[f"feeds/all.{fmt}"].body
        assert xml_links(sub)["prev-archive"] == f"{BASE}feeds/all/archive/{feed.pages[-1]}.{fmt}"
        assert xml_links(sub)["current"] == xml_links(sub)["self"] == f"{BASE}feeds/all.{fmt}"
        assert not is_archive(sub) and "hub" in xml_links(sub)
        for k, page in enumerate(pages):
            doc = docs[f"feeds/all/archive/{page.page}.{fmt}"]
            assert doc.archive and not docs[f"feeds/all.{fmt}"].archive
            links = xml_links(doc.body)
            assert links["self"] == f"{BASE}feeds/all/archive/{page.page}.{fmt}"
            assert links["current"] == f"{BASE}feeds/all.{fmt}"
            assert "hub" not in links and is_archive(doc.body)
            # Every page has an archive link (no "Archive incomplete"): the first one too.
            if k:
                assert links["prev-archive"] == f"{BASE}feeds/all/archive/{pages[k - 1].page}.{fmt}"
            else:
                assert "prev-archive" not in links
            newer = (
                f"{BASE}feeds/all/archive/{pages[k + 1].page}.{fmt}" if k + 1 < len(pages) else f"{BASE}feeds/all.{fmt}"
            )
            assert links["next-archive"] == newer
            parsed = feedparser.parse(doc.body)
            assert not parsed.bozo and len(parsed.entries) == len(page.entries)
            assert parsed.feed.title.endswith(f" (archive from {page.entries[-1].published.date().isoformat()})")
            assert parsed.feed.link == f"{BASE}feeds/all.html"  # the feed's HTML page, as the feed has
            if fmt == "atom":  # one logical feed: the subscription document's id
                assert parsed.feed.id == feedparser.parse(sub).feed.id == f"{BASE}feeds/all"
                newest = max(datetime(*e.updated_parsed[:6], tzinfo=UTC) for e in parsed.entries)
                assert doc.last_modified is not None and abs((doc.last_modified - newest).total_seconds()) < 1
    # JSON Feed and the HTML page show what the subscription documents show.
    sub_ids = [e.id for e in feedparser.parse(docs["feeds/all.atom"].body).entries]
    json_ids = [item["id"] for item in __import__("json").loads(docs["feeds/all.json"].body)["items"]]
    assert json_ids == sub_ids and len(sub_ids) == len(feed.entries)


def test_a_single_page_links_forward_to_the_subscription_document(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    write_corpus(folder, MAX_ENTRIES + 1, seed=2, topics=1, providers=1)
    site = build_in_memory(small_config(folder, tmp_path / "out"))
    for fmt in ("atom", "rss"):
        links = xml_links(site.documents[f"feeds/all/archive/{FIRST}.{fmt}"].body)
        assert links["next-archive"] == links["current"] == f"{BASE}feeds/all.{fmt}" and "prev-archive" not in links


def test_without_archives_nothing_changes(records_dir: Path, tmp_path: Path) -> None:
    off = build_in_memory(small_config(records_dir, tmp_path, archives=ArchivesConfig(enabled=False)))
    assert not [p for p in off.documents if "/archive/" in p]
    body = off.documents["feeds/all.atom"].body
    assert b"prev-archive" not in body and FH_NS.encode() not in body
    assert len(feedparser.parse(body).entries) == MAX_ENTRIES


def test_archive_pages_are_gzipped_at_their_own_level(records_dir: Path, tmp_path: Path) -> None:
    """Archive pages (fetched once, most of the bytes) at `compress.ARCHIVE_LEVEL`; what readers poll at `LEVEL`."""
    out = tmp_path / "out"
    rebuild(small_config(records_dir, out))
    levels: dict[int, int] = {}
    differ = 0
    for gz in sorted(out.rglob("*.gz")):
        body = gz.with_suffix("").read_bytes()
        level = compress.ARCHIVE_LEVEL if "/archive/" in gz.as_posix() else compress.LEVEL
        assert gz.read_bytes() == gzip.compress(body, compresslevel=level, mtime=0), gz
        levels[level] = levels.get(level, 0) + 1
        differ += gzip.compress(body, compresslevel=compress.LEVEL, mtime=0) != gz.read_bytes()
    assert compress.ARCHIVE_LEVEL != compress.LEVEL and set(levels) == {compress.LEVEL, compress.ARCHIVE_LEVEL}
    assert differ, "at this size the two levels give other bytes, so the test tells them apart"


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


def walk(fetch: Callable[[str], bytes], start: str, rel: str) -> tuple[list[str], list[str]]:
    """Follow `rel` links from `start` (a URL) while they lead to archive pages; (URLs, entry ids met)."""
    urls, ids = [], []
    url: str | None = start
    while url is not None:
        assert url not in urls, f"a loop back to {url}"
        urls.append(url)
        data = fetch(url)
        parsed = feedparser.parse(data)
        assert not parsed.bozo, (url, parsed.get("bozo_exception"))
        ids += [e.id for e in parsed.entries]
        links = xml_links(data)
        if is_archive(data):
            assert links["current"] and ("prev-archive" in links or "next-archive" in links), url
        url = links.get(rel)
        if rel == "next-archive" and url == links.get("current"):
            url = None  # the newest page leads back to the subscription document
    return urls, ids


def assert_every_record_once(fetch: Callable[[str], bytes], members: dict[str, set[str]]) -> int:
    """Walk every feed both ways in both formats; the number of pages met."""
    pages = 0
    for path, ids in sorted(members.items()):
        for fmt in ("atom", "rss"):
            urls, got = walk(fetch, f"{BASE}{path}.{fmt}", "prev-archive")
            assert len(got) == len(set(got)) == len(ids), (path, fmt)
            assert set(got) == ids, (path, fmt)
            assert all(
                re.fullmatch(rf"{re.escape(BASE + path)}/archive/[^/]+\.{fmt}", u)
                and NAME.match(u.rsplit("/", 1)[1][: -len(fmt) - 1])
                for u in urls[1:]
            )
            pages += len(urls) - 1
            if len(urls) > 1:  # and forward from the first page, then the subscription document
                assert urls[-1] == f"{BASE}{path}/archive/{FIRST}.{fmt}"
                forward, ids_forward = walk(fetch, urls[-1], "next-archive")
                assert forward == urls[:0:-1]
                feed = feedparser.parse(fetch(f"{BASE}{path}.{fmt}"))
                ids_forward += [e.id for e in feed.entries]
                assert sorted(ids_forward) == sorted(got)
    return pages


def files_fetch(out: Path) -> Callable[[str], bytes]:
    def fetch(url: str) -> bytes:
        return (out / url.removeprefix(BASE)).read_bytes()

    return fetch


def feed_entry_ids(data: bytes) -> list[str]:
    return [e.id for e in feedparser.parse(data).entries]


# The random sequence of changes: adds, edits, re-dates and deletes, seeded and bounded.

_PUBLISHED = re.compile(r"(?m)^publishedDateTime: .*$")
_TITLE = re.compile(r'(?m)^title: ".*"$')


def add_record(records_dir: Path, n: int, when: datetime, topic: str = "Added") -> Path:
    path = records_dir / f"zz_added_{n:03d}.txt"
    path.write_text(
        f'---\ntitle: "Added {n}"\nwebUrl: "https://added.example.com/{n}"\n'
        f"publishedDateTime: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}\ntopics: [{topic}]\n---\n",
        encoding="utf-8",
    )
    return path


def random_changes(records_dir: Path, rnd: random.Random, count: int, tag: str) -> list[str]:
    """`count` changes to `records_dir`, each an add, an edit, a re-date or a delete; what was done."""
    done = []
    for n in range(count):
        files = sorted(records_dir.glob("*.txt"))
        op = rnd.choice(["add", "edit", "redate", "delete"])
        when = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=rnd.randrange(2 * 365 * 24 * 60))
        if op == "add":
            add_record(records_dir, rnd.randrange(1000), when, rnd.choice(["Added", "Other"]))
        else:
            path = rnd.choice(files)
            text = path.read_text(encoding="utf-8")
            if op == "delete":
                path.unlink()
            elif op == "edit":
                path.write_text(_TITLE.sub(f'title: "Edited {tag} {n}"', text, count=1), encoding="utf-8")
            else:
                path.write_text(
                    _PUBLISHED.sub(f"publishedDateTime: {when:%Y-%m-%dT%H:%M:%SZ}", text, count=1), encoding="utf-8"
                )
            done.append(f"{op} {path.name}")
            continue
        done.append(op)
    return done


def test_the_chain_in_the_static_files_holds_every_record_once_through_changes(
    records_dir: Path, tmp_path: Path
) -> None:
    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)
    fetch = files_fetch(config.output_dir)
    assert assert_every_record_once(fetch, expected_members(records_dir, config)) > 20
    rnd = random.Random(12)
    for round_ in range(6):
        random_changes(records_dir, rnd, rnd.randrange(1, 5), f"r{round_}")
        incremental.build(config)
        assert assert_every_record_once(fetch, expected_members(records_dir, config)) > 20
        # No file of a page that is gone is left behind, and every page is one the chain reaches.
        expected = build_in_memory(config).documents
        assert {p.relative_to(config.output_dir).as_posix() for p in config.output_dir.rglob("archive/*")} == {
            q for p in expected if "/archive/" in p for q in (p, p + ".gz")
        }


@pytest.fixture
def server(records_dir: Path, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = {
        "max_entries": MAX_ENTRIES,
        "archives": {"enabled": True, "page_size": PAGE_SIZE},
        "site": {"title": "t", "base_url": BASE},
    }
    config = write_config(
        tmp_path / "config.yaml", records_dir, settings=settings, port=port, workers=1, cache_max_age=60
    )
    server = Server(config, port, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_chain_over_http_holds_every_record_once_through_changes(
    server: Server, records_dir: Path, tmp_path: Path
) -> None:
    seen: dict[str, str] = {}

    def fetch(url: str) -> bytes:
        path = url.removeprefix(BASE)
        r = server.get("/" + path, headers={"Accept-Encoding": "gzip"})
        assert r.status == 200, url
        seen[path] = r.header("Cache-Control") or ""
        again = server.get("/" + path, headers={"Accept-Encoding": "gzip", "If-None-Match": r.header("ETag") or ""})
        assert again.status == 304 and again.header("Cache-Control") == seen[path]
        assert r.header("Content-Encoding") == "gzip" and r.header("Last-Modified")
        return gzip.decompress(r.body)

    def walks(config: Config) -> int:
        return assert_every_record_once(fetch, expected_members(records_dir, config))

    def settled(config: Config) -> bool:
        try:
            walks(config)
        except (AssertionError, KeyError):
            return False
        return True

    config = small_config(records_dir, tmp_path / "unused")
    assert walks(config) > 20
    assert {c for p, c in seen.items() if "/archive/" in p} == {ARCHIVE_CACHE}
    assert {c for p, c in seen.items() if "/archive/" not in p} == {"public, max-age=60"}
    # An archive page ignores a query (it is never a custom feed); an unknown page is 404.
    first = f"/feeds/all/archive/{FIRST}.atom"
    assert server.get(first + "?limit=2").body == server.get(first).body
    assert server.get("/feeds/all/archive/1.atom").status == 404
    assert server.get("/feeds/all/archive/20990101-00000000.atom").status == 404
    # The server's builder picks up each round of changes; the chain is whole again after it.
    rnd = random.Random(21)
    for round_ in range(3):
        random_changes(records_dir, rnd, rnd.randrange(1, 4), f"h{round_}")
        assert poll(lambda: settled(config), timeout=30, interval=0.3), round_
        walks(config)


# --- Stability ------------------------------------------------------------------------


def page_files(out: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("archive/*")) if p.is_file() and p.suffix != ".gz"
    }  # fmt: skip


def rewritten(before: dict[str, tuple[bytes, int]], after: dict[str, tuple[bytes, int]]) -> dict[str, set[str]]:
    """Feed path → names of its pages whose files are new or were rewritten (any format)."""
    out: dict[str, set[str]] = {}
    for path, (data, _stamp) in after.items():
        if before.get(path, (None,))[0] != data:
            feed, name = path.rsplit("/archive/", 1)
            out.setdefault(feed, set()).add(name.rsplit(".", 1)[0])
    return out


def test_newer_records_change_only_the_newest_page(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)
    before = page_files(config.output_dir)
    newest = datetime(2030, 1, 1, tzinfo=UTC)
    for n in range(8):
        add_record(records_dir, n, newest + timedelta(hours=n))
        report = incremental.build(config)
        after = page_files(config.output_dir)
        changes = rewritten(before, after)
        assert all(len(names) <= 2 for names in changes.values()), changes
        # Only the pages written were rendered, and untouched pages keep their files (not even rewritten).
        assert {p for p in report.changes.documents if "/archive/" in p} == {
            p for p in after if before.get(p) != after[p]
        }
        assert all(after[p] == before[p] for p in before if p in after and p.rsplit("/archive/", 1)[0] not in changes)
        before = after


@pytest.mark.parametrize("change", ["add-old", "edit", "redate", "delete", "unpublish"])
def test_one_record_rewrites_few_pages_and_a_takedown_is_complete(
    change: str, records_dir: Path, tmp_path: Path
) -> None:
    config = small_config(records_dir, tmp_path / "out", include_unpublished=False)
    incremental.build(config)
    before = page_files(config.output_dir)
    site = build_in_memory(config)
    feed = next(f for f in site.feeds if f.key.kind is FeedKind.ALL)
    middle = site.pages[(feed.key, feed.pages[len(feed.pages) // 2])].entries[0]  # an archived record
    path = records_dir / middle.path
    text = path.read_text(encoding="utf-8")
    if change == "add-old":
        add_record(records_dir, 1, middle.published + timedelta(seconds=1))
    elif change == "edit":
        path.write_text(_TITLE.sub('title: "Corrected title"', text, count=1), encoding="utf-8")
    elif change == "redate":
        path.write_text(_PUBLISHED.sub("publishedDateTime: 2023-01-01T00:00:01Z", text, count=1), encoding="utf-8")
    elif change == "delete":
        path.unlink()
    else:
        path.write_text(text.replace("published: true", "published: false", 1), encoding="utf-8")
    report = incremental.build(config)
    changes = rewritten(before, page_files(config.output_dir))
    assert changes and all(len(names) <= 3 for names in changes.values()), changes
    assert len(changes) <= 1 + len(middle.topics) + 1 + (change == "add-old")  # the feeds it is (or was) in
    assert incremental.build(config).changes.documents == {}
    # The folder is exactly what a whole build in memory makes.
    expected = build_in_memory(config).documents
    assert {p for p in report.changes.documents} <= set(expected)
    files = {
        p.relative_to(config.output_dir).as_posix(): p.read_bytes()
        for p in config.output_dir.rglob("*")
        if p.is_file() and p.suffix != ".gz" and not p.name.startswith(".")
    }
    assert files == {p: d.body for p, d in expected.items()}
    if change in ("delete", "unpublish"):
        # Gone from every document, archive pages included, and from their .gz copies.
        for p in config.output_dir.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
                assert middle.id.encode() not in data and middle.title.encode() not in data, p


@contextmanager
def nothing_rendered() -> Iterator[None]:
    """Rendering a feed or an archive page in this process fails the test, while inside."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the web app rendered a document")

    with pytest.MonkeyPatch.context() as patch:
        for module in ("feedsvc.formats.documents", "feedsvc.build.render"):
            patch.setattr(f"{module}.archive_documents", fail)
        for name in ("render_archive", "render_feed"):
            patch.setattr(f"feedsvc.formats.rss_atom.{name}", fail)
        patch.setattr("feedsvc.formats.jsonfeed.render_json", fail)
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
        assert r.headers["Cache-Control"] == ARCHIVE_CACHE and "immutable" not in r.headers["Cache-Control"]
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Content-Type"] == client.get("/" + feed).headers["Content-Type"]  # as its feed's
        assert r.headers["Last-Modified"] == format_datetime(last_modified.astimezone(UTC), usegmt=True)
        again = client.get(
            "/" + path,
            headers={"If-None-Match": r.headers["ETag"], "Accept-Encoding": r.headers.get("Content-Encoding", "")},
        )
        assert again.status_code == 304 and again.data == b"" and again.headers["Cache-Control"] == ARCHIVE_CACHE
        assert again.headers["ETag"] == r.headers["ETag"]
        since = client.get("/" + path, headers={"If-Modified-Since": r.headers["Last-Modified"]})
        assert since.status_code == 304
    assert plain.headers["ETag"] != zipped.headers["ETag"]
    assert int(plain.headers["Content-Length"]) == len(body)
    head = client.head("/" + path)
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Length"] == str(len(body))
    assert client.get(f"/{path}?limit=2").data == body  # a page ignores a query
    return str(plain.headers["ETag"])


def test_the_web_app_serves_pages_from_the_files_and_revalidates_them(records_dir: Path, tmp_path: Path) -> None:
    config = small_config(records_dir, tmp_path / "out")
    client = served_app(config).test_client()
    expected = build_in_memory(config).documents
    pages = sorted(p for p in expected if "/archive/" in p)
    assert len(pages) > 20
    with nothing_rendered():
        etags = {
            p: assert_page_served(client, config.output_dir, p, expected[p].body, expected[p].last_modified)
            for p in pages
        }
        assert client.get("/feeds/all/archive/999.atom").status_code == 404
    # A correction to an archived record: its page has new bytes at the same URL, so a
    # cache revalidating its copy gets them (a 200 with a new ETag), and nothing else moves.
    site = build_in_memory(config)
    feed = next(f for f in site.feeds if f.key.kind is FeedKind.ALL)
    page = site.pages[(feed.key, feed.pages[1])]
    target = records_dir / page.entries[0].path
    target.write_text(
        _TITLE.sub('title: "A corrected title"', target.read_text(encoding="utf-8"), count=1), encoding="utf-8"
    )
    rebuild(config)
    reference = build_in_memory(config).documents
    path = f"{page.path}.atom"
    with nothing_rendered():
        r = client.get("/" + path, headers={"If-None-Match": etags[path]})
        assert r.status_code == 200 and b"A corrected title" in r.data and r.headers["ETag"] != etags[path]
        assert r.headers["Cache-Control"] == ARCHIVE_CACHE
        for p in sorted(p for p in reference if "/archive/" in p):
            assert_page_served(client, config.output_dir, p, reference[p].body, reference[p].last_modified)
            if reference[p].body == expected.get(p, dataclasses.replace(reference[p], body=b"")).body:
                assert client.get("/" + p, headers={"If-None-Match": etags[p]}).status_code == 304, p


def test_a_cache_with_numbered_pages_removes_them(records_dir: Path, tmp_path: Path) -> None:
    """A cache from before named pages: its numbered pages' files go at the next build."""
    import sqlite3

    from feedsvc.records import codec

    config = small_config(records_dir, tmp_path / "out")
    incremental.build(config)
    out = config.output_dir
    cache = incremental.default_cache_path(out)
    # What an older feedsvc left: a numbered page file it listed, and its table.
    (out / "feeds/all/archive/1.atom").write_bytes(b"<feed/>")
    manifest = out / ".feedsvc-manifest.json"
    import json

    listed = json.loads(manifest.read_text(encoding="utf-8"))
    import hashlib

    listed["feeds/all/archive/1.atom"] = hashlib.sha256(b"<feed/>").hexdigest()
    manifest.write_text(json.dumps(listed), encoding="utf-8")
    with sqlite3.connect(cache) as db:
        db.execute(
            "CREATE TABLE archive_pages (feed TEXT NOT NULL, page INTEGER NOT NULL, digest TEXT, staged TEXT,"
            " PRIMARY KEY (feed, page)) WITHOUT ROWID"
        )
        db.execute("INSERT INTO archive_pages VALUES ('all/all', 1, 'x', NULL)")
        db.execute("UPDATE meta SET value='old' WHERE key='fingerprint'")  # an older codec.VERSION
    assert codec.VERSION >= 3
    incremental.build(config)
    assert not (out / "feeds/all/archive/1.atom").exists()
    with sqlite3.connect(cache) as db:
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name='archive_pages'").fetchone()
        assert not db.execute("SELECT 1 FROM archive_digests WHERE page='1'").fetchone()


def test_page_order_sorts_pages_by_the_date_they_start() -> None:
    """The build renders pages newest first across feeds (build/render.py) by this key."""
    names = [s.name for s in layout(entries(2_000, seed=3), Paging(50, 5))]
    assert names[0] == FIRST and len(names) > 10
    ordered = sorted(sorted(names, key=lambda n: n[::-1]), key=page_order)
    assert ordered[0] == FIRST
    # By the day a page starts (pages starting on one day may come in any order).
    assert [n[:8] for n in ordered[1:]] == [n[:8] for n in names[1:]]
