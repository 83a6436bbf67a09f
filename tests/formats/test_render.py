"""render.py: what a feed reader sees in our RSS and Atom, checked with feedparser.

The expected values for the shipped seeds are data (tests/data/seeds_expected.yaml);
these tests parse every feed the seeds give and compare.
"""

from __future__ import annotations

import dataclasses
import html
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedgen.entry
import feedgen.feed
import feedparser
import html5lib
import pytest
import yaml
from conftest import DATA, feed_files
from lxml import etree

from feedsvc import synth
from feedsvc.config import ArchivesConfig, Config
from feedsvc.formats.common import Site, entry_updated_times, plain, safe_url
from feedsvc.formats.documents import Build
from feedsvc.formats.documents import build_in_memory as site_build
from feedsvc.formats.rss_atom import EMPTY_FEED_DATE, keep_fragments, render_archive, render_feed  # fmt: skip
from feedsvc.model import ArchivePage, Feed, FeedKey, FeedKind, Image, Provider, Record, Related

EXPECTED = yaml.safe_load((DATA / "seeds_expected.yaml").read_text(encoding="utf-8"))
SITE = EXPECTED["site"]
FEED_CASES = [(path, fmt) for path in EXPECTED["feeds"] for fmt in ("rss", "atom")]
JOINER = "\u2060"
UTC = UTC


def _when(struct: time.struct_time) -> datetime:
    return datetime(*struct[:6], tzinfo=UTC)


def _parse(path: Path) -> Any:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, (path, parsed.get("bozo_exception"))
    return parsed


def test_the_seeds_give_exactly_the_expected_feeds(seed_site: Build, config: Config) -> None:
    out = config.output_dir
    found = {p.relative_to(out).as_posix() for p in feed_files(out)}
    assert found == {f"{path}.{fmt}" for path, fmt in FEED_CASES}


@pytest.mark.parametrize(("path", "fmt"), FEED_CASES, ids=[f"{p}.{f}" for p, f in FEED_CASES])
def test_feed_metadata(seed_site: Build, config: Config, path: str, fmt: str) -> None:
    expected = EXPECTED["feeds"][path]
    parsed = _parse(config.output_dir / f"{path}.{fmt}")
    feed = parsed.feed
    assert parsed.version == {"rss": "rss20", "atom": "atom10"}[fmt]
    assert feed.title == expected["title"]
    links = {(link.rel, link.get("type")): link.href for link in feed.links}
    self_type = {"rss": "application/rss+xml", "atom": "application/atom+xml"}[fmt]
    assert links[("self", self_type)] == f"{SITE['base_url']}{path}.{fmt}"
    assert links[("alternate", "text/html")] == f"{SITE['base_url']}{path}.html"
    assert _when(feed.updated_parsed) == expected["updated"]
    assert feed.language == SITE["language"]
    assert feed.generator == SITE["generator"]
    assert feed.subtitle == SITE["description"]
    if fmt == "rss":
        assert int(feed.ttl) == SITE["ttl"]
        assert feed.docs.startswith("http")
    else:
        assert feed.id == f"{SITE['base_url']}{path}"
    assert [e.id for e in parsed.entries] == [EXPECTED["entries"][k]["id"] for k in expected["entries"]]


@pytest.mark.parametrize(("path", "fmt"), FEED_CASES, ids=[f"{p}.{f}" for p, f in FEED_CASES])
def test_entries(seed_site: Build, config: Config, path: str, fmt: str) -> None:
    parsed = _parse(config.output_dir / f"{path}.{fmt}")
    for key, entry in zip(EXPECTED["feeds"][path]["entries"], parsed.entries, strict=True):
        want = EXPECTED["entries"][key]
        assert entry.id == want["id"]
        assert entry.title == want["title"]
        assert entry.link == want["link"]
        assert _when(entry.published_parsed) == want["published"]
        assert entry.summary == want["summary"]
        _check_content(entry.content[0].value, want)
        media = [(m["url"], m.get("medium"), int(m["width"]), int(m["height"])) for m in entry.media_content]
        assert media == [(i["url"], "image", i["width"], i["height"]) for i in want["images"]]
        lead = want["images"][0]
        thumbs = [(t["url"], int(t["width"]), int(t["height"])) for t in entry.media_thumbnail]
        assert thumbs == [(lead["url"], lead["width"], lead["height"])]
        if fmt == "rss":
            _check_rss_entry(entry, want)
        else:
            _check_atom_entry(entry, want)


def _check_rss_entry(entry: Any, want: dict[str, Any]) -> None:
    assert entry.guidislink is False
    assert entry.author == want["author"]["name"]  # dc:creator
    assert [t.term for t in entry.tags] == [c["label"] for c in want["categories"]]


def _check_atom_entry(entry: Any, want: dict[str, Any]) -> None:
    assert _when(entry.updated_parsed) == want["updated"]
    assert entry.author_detail == {"name": want["author"]["name"], "href": want["author"]["uri"]}
    assert [(t.term, t.label) for t in entry.tags] == [(c["term"], c["label"]) for c in want["categories"]]
    # feedgen 1.0.0 drops rel/type/title from entry links (issue #135); the
    # LinksEntryExtension must put them back.
    by_rel: dict[str, list[Any]] = {}
    for link in entry.links:
        by_rel.setdefault(link.rel, []).append(link)
    assert [link.href for link in by_rel["alternate"]] == [want["link"]]
    lead = want["images"][0]
    assert [(link.href, link.type) for link in by_rel["enclosure"]] == [(lead["url"], lead["type"])]
    assert [(link.href, link.title) for link in by_rel["related"]] == [(r["url"], r["title"]) for r in want["related"]]


def _check_content(markup: str, want: dict[str, Any]) -> None:
    """The HTML body: excerpt, lead image, a "Related coverage" list, a link to the article."""
    fragment = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parseFragment(markup)
    texts = ["".join(el.itertext()) for el in fragment.iter("p")]
    assert texts[0] == want["summary"]
    assert [img.get("src") for img in fragment.iter("img")] == [want["images"][0]["url"]]
    assert ["".join(h.itertext()) for h in fragment.iter("h3")] == ["Related coverage"]
    items = list(fragment.iter("li"))
    assert [(li.find("a").get("href"), li.find("a").text) for li in items] == [
        (r["url"], r["title"]) for r in want["related"]
    ]
    for li, r in zip(items, want["related"], strict=True):
        assert "".join(li.itertext()).endswith(f"({r['provider']})")
    last = list(fragment.iter("a"))[-1]
    assert last.get("href") == want["link"]
    assert last.text == f"Read the article at {want['author']['name']}"


def test_guid_is_not_a_permalink(seed_site: Build, config: Config) -> None:
    tree = etree.parse(str(config.output_dir / "feeds/all.rss"))
    guids = tree.findall(".//item/guid")
    assert guids and [g.get("isPermaLink") for g in guids] == ["false"] * len(guids)


def test_an_entry_has_one_id_in_every_feed_and_format(seed_site: Build, config: Config) -> None:
    ids: dict[str, set[str]] = {}
    for path in feed_files(config.output_dir):
        for entry in _parse(path).entries:
            ids.setdefault(entry.link, set()).add(entry.id)
    assert ids == {e["link"]: {e["id"]} for e in EXPECTED["entries"].values()}


# --- Determinism ----------------------------------------------------------


class _AnyDatetime(type):
    # feedgen checks isinstance(value, datetime) against the name we replace.
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, datetime)


class _FutureClock(datetime, metaclass=_AnyDatetime):
    """What feedgen would stamp if it read the clock: a date no record has."""

    @classmethod
    def now(cls, tz: Any = None) -> _FutureClock:  # type: ignore[override]
        return cls(2099, 9, 9, 9, 9, 9, tzinfo=tz or UTC)


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_rendering_never_reads_the_clock(seed_site: Build, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    site = Site.from_config(Config())
    feeds = list(seed_site.feeds) + [_feed([])]
    before = [render_feed(f, site, fmt) for f in feeds]
    monkeypatch.setattr(feedgen.feed, "datetime", _FutureClock)
    monkeypatch.setattr(feedgen.entry, "datetime", _FutureClock)
    assert [render_feed(f, site, fmt) for f in feeds] == before
    assert all(b"2099" not in body for body in before)


# --- Entry updated times --------------------------------------------------


def _record(n: int, *, when: datetime | None = None, **changes: Any) -> Record:
    url = f"https://news.example.com/story-{n}"
    when = when or datetime(2023, 5, 1, 12, 0, tzinfo=UTC) + timedelta(hours=n)
    record = Record(
        path=f"r{n:03}.txt",
        id=f"urn:uuid:00000000-0000-5000-8000-{n:012d}",
        canonical_url=url,
        title=f"Story {n}",
        link=url,
        published=when,
        updated=when,
        excerpt=f"Excerpt {n}.",
        provider=Provider("Example News", "news.example.com"),
    )
    return dataclasses.replace(record, **changes)


def _feed(entries: list[Record], slug: str = "all") -> Feed:
    kind = FeedKind.ALL if slug == "all" else FeedKind.TOPIC
    return Feed(FeedKey(kind, slug), "All articles", tuple(entries), len(entries))


def test_updated_times_are_unique_in_a_feed() -> None:
    same = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    entries = [_record(n, when=same) for n in range(6)] + [_record(9, when=same + timedelta(seconds=1))]
    times = entry_updated_times(entries)
    assert len(set(times)) == len(times)
    # Shared times move by less than a second, never backwards; a unique one stays.
    assert all(same <= t < same + timedelta(seconds=1) for t in times[:6])
    assert times[6] == same + timedelta(seconds=1)
    # The offset depends on the entry, not on its place or its neighbours.
    assert entry_updated_times(list(reversed(entries[:6]))) == list(reversed(times[:6]))
    assert entry_updated_times(entries[:2]) == times[:2]


def test_distinct_updated_times_are_kept_exactly() -> None:
    entries = [_record(n) for n in range(5)]
    assert entry_updated_times(entries) == [r.updated for r in entries]


def test_atom_entries_sharing_a_time_get_distinct_updated_values() -> None:
    same = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    feed = _feed([_record(n, when=same) for n in range(4)])
    site = Site.from_config(Config())
    atom = feedparser.parse(render_feed(feed, site, "atom"))
    values = [e.updated for e in atom.entries]
    assert len(set(values)) == 4
    # The feed's updated is the newest entry's, as written.
    assert atom.feed.updated == max(values, key=datetime.fromisoformat)
    rss = feedparser.parse(render_feed(feed, site, "rss"))
    assert _when(rss.feed.updated_parsed) == same


def test_an_empty_feed_is_valid_and_dated_from_no_clock() -> None:
    site = Site.from_config(Config())
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(render_feed(_feed([]), site, fmt))
        assert not parsed.bozo
        assert parsed.entries == []
        assert _when(parsed.feed.updated_parsed) == EMPTY_FEED_DATE
    atom = feedparser.parse(render_feed(_feed([]), site, "atom"))
    assert atom.feed.author == Config().site.title  # Atom requires one without entries


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feed format"):
        render_feed(_feed([]), Site.from_config(Config()), "json")


# --- Plain text and URLs --------------------------------------------------

PLAIN_CASES = [
    ("AT&T and Q&A: fish & chips", "AT&T and Q&A: fish & chips"),
    ("5 < 6 and 7 > 3", "5 < 6 and 7 > 3"),
    ("&copy 2023", f"&{JOINER}copy 2023"),
    ("R&amp;D", f"R&{JOINER}amp;D"),
    ("50&50", f"50&{JOINER}50"),
    ("a &#65; b", f"a &{JOINER}#65; b"),
    ("&bigstar; rated", f"&{JOINER}bigstar; rated"),
    ("x <b y", f"x <{JOINER}b y"),
    ("end </", f"end <{JOINER}/"),
    ("C1\x85\x9f and \ufffd replacement", "C1 and  replacement"),
    ("non\ufdd0char\U0001fffe", "nonchar"),
    ("Ünïcödé 東京 🤖", "Ünïcödé 東京 🤖"),
]


@pytest.mark.parametrize(("text", "written"), PLAIN_CASES)
def test_plain_text_fields_carry_no_markup(text: str, written: str) -> None:
    assert plain(text) == written
    assert plain(written) == written  # idempotent


def test_safe_url_encodes_what_a_uri_may_not_hold() -> None:
    assert safe_url("https://example.com/a[1]/b?q=[x]#f]") == "https://example.com/a%5B1%5D/b?q=%5Bx%5D#f%5D"
    assert safe_url("https://example.com/ok/%C3%A9?a=1&b=2") == "https://example.com/ok/%C3%A9?a=1&b=2"
    assert safe_url("https://example.com/100%/caf\u00e9 x") == "https://example.com/100%25/caf%C3%A9%20x"


def test_hostile_text_reaches_the_reader_as_written() -> None:
    record = _record(
        1,
        title="Caf\u00e9 &copy 2023 <b",
        excerpt="Tom & Jerry say 1 < 2 </p> &amp; more",
        provider=Provider("<script>alert(1)</script>", "evil.example"),
        topics=("C++ & <Rust>",),
        images=(Image("https://img.example.com/a[1].jpg", 10, 20),),
        related=(Related("A &lt; B", "https://r.example.com/x", "R&D"),),
    )
    site = Site.from_config(Config())
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(render_feed(_feed([record]), site, fmt))
        assert not parsed.bozo
        entry = parsed.entries[0]
        assert entry.title.replace(JOINER, "") == record.title
        summary = entry.summary_detail
        # RSS <description> is HTML: the reader shows it unescaped.
        shown = html.unescape(summary.value) if summary.type == "text/html" else summary.value
        assert shown.replace(JOINER, "") == record.excerpt
        assert entry.media_content[0]["url"] == "https://img.example.com/a%5B1%5D.jpg"
        assert "<script" not in entry.content[0].value


# --- Fast paths of the output guards agree with the general ones ---------------------

from urllib.parse import quote, urlsplit, urlunsplit  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from feedsvc import text as text_rules  # noqa: E402
from feedsvc.formats import common as _render  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["https://", "http://", "HTTP://"]),
    st.text(alphabet="abcXYZ09-._~!#$&'()*+,/:;=?@%[] \"<>^`{|}é", max_size=40),
)
def test_safe_url_fast_path_agrees_with_encoding(scheme: str, rest: str) -> None:
    url = scheme + "example.com/" + rest
    parts = urlsplit(url)
    encode = lambda part: quote(text_rules.BARE_PERCENT.sub("%25", part), safe=text_rules.URL_SAFE)  # noqa: E731
    general = urlunsplit((parts.scheme, parts.netloc, encode(parts.path), encode(parts.query), encode(parts.fragment)))
    assert _render.safe_url(url) == general


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_plain_fast_path_drops_what_the_full_pass_drops(text: str) -> None:
    """Skipping the character pass for printable ASCII must change nothing."""
    full = text_rules.UNPUBLISHABLE.sub("", text)
    assert _render.plain(text) == _render.plain(full)
    assert not text_rules.UNPUBLISHABLE.search(_render.plain(text))


def _documents(build: Build, site: Site) -> list[tuple[Feed | ArchivePage, str]]:
    return [(doc, fmt) for doc in (*build.feeds, *build.pages.values()) for fmt in ("rss", "atom")]


def _rendered(doc: Feed | ArchivePage, site: Site, fmt: str) -> bytes:
    if isinstance(doc, ArchivePage):
        return render_archive(doc, site, fmt)
    return render_feed(doc, site, fmt)


@pytest.mark.parametrize("folder", ["synthetic", "hostile"])
def test_spliced_entries_give_the_bytes_feedgen_writes(tmp_path: Path, folder: str) -> None:
    """Entries written once and reused (`render.Fragments`) make exactly feedgen's documents.

    Over every feed and archive page of a synthetic corpus and of the hostile
    records (odd text, URLs, images), with a cache so small that entries are
    forgotten and written again, and with entries that share an updated time
    (their times move by a different amount in each feed).
    """
    records = tmp_path / "records"
    if folder == "synthetic":
        synth.write_corpus(records, 300, seed=7)
    else:
        shutil.copytree(DATA / "records", records, ignore=shutil.ignore_patterns("*.yaml"))
    config = dataclasses.replace(
        Config(), records_dir=records, include_unpublished=True, max_entries=6,
        archives=ArchivesConfig(enabled=True, page_size=4),
    )  # fmt: skip
    build = site_build(config)
    assert build.pages, "the corpus must give archive pages"
    site = Site.from_config(config)
    first = build.feeds[0]
    same_time = [dataclasses.replace(r, updated=first.entries[0].updated) for r in first.entries]
    tied = dataclasses.replace(first, entries=tuple(same_time))
    cases = [*_documents(build, site), (tied, "rss"), (tied, "atom")]
    try:
        keep_fragments(0)
        plain_bytes = [_rendered(doc, site, fmt) for doc, fmt in cases]
        keep_fragments(5)
        spliced = [_rendered(doc, site, fmt) for doc, fmt in cases]
    finally:
        keep_fragments(0)
    assert len(cases) > 20
    for (doc, fmt), want, got in zip(cases, plain_bytes, spliced, strict=True):
        assert got == want, (doc.key, getattr(doc, "page", ""), fmt)
