"""pages.py: the HTML index, the browser view of each feed, the 404 page, and the OPML list.

tests/e2e/test_browser.py opens the same pages in a real browser.
"""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import html5lib
from lxml import etree

from feedsvc.build.write import publish
from feedsvc.config import Config, base_url
from feedsvc.formats.common import Site
from feedsvc.formats.documents import Build, build_in_memory
from feedsvc.formats.html import render_feed_page
from feedsvc.formats.registry import HTML, ICO
from feedsvc.model import ALL, Feed, FeedKey, FeedKind, Image, Provider, Record


def _html(path: Path) -> Any:
    """The page parsed by a strict HTML parser (a parse error fails the test)."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(path.read_bytes())


def _feed_urls(site: Build, base: str) -> dict[str, tuple[str, str, str, str]]:
    return {
        f.name: tuple(f"{base}{f.key.path}.{ext}" for ext in ("html", "rss", "atom", "json"))  # type: ignore[misc]
        for f in site.feeds
    }


def _feed_rows(page: Any) -> dict[str, Any]:
    """The index's row of each feed (an <li> in a list of feeds), by the name it links."""
    return {
        "".join(li.find("a").itertext()): li
        for ul in page.iter("ul")
        if ul.get("class") == "feeds"
        for li in ul.findall("li")
    }


def test_the_index_links_every_feed(seed_site: Build, config: Config) -> None:
    page = _html(config.output_dir / "index.html")
    hrefs = {a.get("href") for a in page.iter("a")}
    urls = _feed_urls(seed_site, base_url(config))
    assert len(urls) == 5
    for name, (html_url, _rss, _atom, _json) in urls.items():
        assert html_url in hrefs, name
    rows = _feed_rows(page)
    assert set(rows) == set(urls)
    counts = {name: int("".join(li.find("span").itertext()).split()[0]) for name, li in rows.items()}
    assert counts == {f.name: f.total for f in seed_site.feeds}


def test_the_index_format_links_lead_to_the_feed_page(seed_site: Build, config: Config) -> None:
    """RSS, Atom and JSON on the index open the feed's page at how to subscribe (issue 13.11).

    A browser shows a raw feed as plain text; the page says what to do with it
    and links the raw address, one click on.
    """
    page = _html(config.output_dir / "index.html")
    urls = _feed_urls(seed_site, base_url(config))
    rows = _feed_rows(page)
    for name, (html_url, rss_url, atom_url, json_url) in urls.items():
        links = {"".join(a.itertext()): a.get("href") for a in rows[name].iter("a")}
        assert links == {
            name: html_url,
            "RSS": f"{html_url}#rss",
            "Atom": f"{html_url}#atom",
            "JSON": f"{html_url}#json",
        }
        target = _html(config.output_dir / html_url.removeprefix(base_url(config)))
        for fragment, raw in (("rss", rss_url), ("atom", atom_url), ("json", json_url)):
            (item,) = [el for el in target.iter() if el.get("id") == fragment]
            assert [a.get("href") for a in item.iter("a")] == [raw]
    # No raw feed address is linked from the index: only announced to feed readers.
    hrefs = {a.get("href") for a in page.iter("a")}
    assert not any(h.endswith((".rss", ".atom", ".json")) for h in hrefs)


def test_format_links_are_named_after_their_feed(seed_site: Build, config: Config) -> None:
    """Each link reading "RSS", "Atom" or "JSON" has an accessible name saying which feed (issue 13.15)."""
    page = _html(config.output_dir / "index.html")
    named: list[str] = []
    for name, li in _feed_rows(page).items():
        for a in li.iter("a"):
            text = "".join(a.itertext())
            if text in ("RSS", "Atom", "JSON"):
                label = a.get("aria-label") or ""
                assert label.startswith(text) and name.casefold() in label.casefold(), (text, label)
                named.append(label)
    assert len(named) == 3 * len(seed_site.feeds) == len(set(named))


def test_the_index_has_autodiscovery_for_the_all_feeds(seed_site: Build, config: Config) -> None:
    page = _html(config.output_dir / "index.html")
    alternates = {(link.get("type"), link.get("href")) for link in page.iter("link") if link.get("rel") == "alternate"}
    base = base_url(config)
    assert alternates == {
        ("application/rss+xml", f"{base}feeds/all.rss"),
        ("application/atom+xml", f"{base}feeds/all.atom"),
        ("application/feed+json", f"{base}feeds/all.json"),
    }


def test_each_feed_page_lists_its_entries_and_discovers_its_feeds(seed_site: Build, config: Config) -> None:
    base = base_url(config)
    for feed in seed_site.feeds:
        page = _html(config.output_dir / f"{feed.key.path}.html")
        alternates = {link.get("href") for link in page.iter("link") if link.get("rel") == "alternate"}
        assert alternates == {f"{base}{feed.key.path}.{fmt}" for fmt in ("rss", "atom", "json")}
        subscribe = {a.get("href") for a in page.iter("a") if a.find("code") is not None}
        assert subscribe == alternates
        articles = [a.find("h2/a").get("href") for a in page.iter("article")]
        assert articles == [r.link for r in feed.entries]
        assert not list(page.iter("script"))


def test_the_opml_lists_every_feed(seed_site: Build, config: Config) -> None:
    root = etree.parse(str(config.output_dir / "feeds.opml")).getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == config.site.title
    modified = email.utils.parsedate_to_datetime(root.findtext("head/dateModified"))
    assert modified == max(f.updated for f in seed_site.feeds if f.updated)
    feeds = [o for o in root.iter("outline") if o.get("type") == "rss"]
    folders = [o for o in root.iter("outline") if o.get("type") != "rss"]
    # Every outline is a feed with xmlUrl, or a folder of such outlines.
    for outline in feeds:
        assert outline.get("xmlUrl") and outline.get("htmlUrl") and outline.get("text"), etree.tostring(outline)
        assert len(outline) == 0
    for folder in folders:
        assert folder.get("text") and len(folder) > 0 and all(o.get("type") == "rss" for o in folder)
    base = base_url(config)
    assert sorted(o.get("xmlUrl") for o in feeds) == sorted(f"{base}{f.key.path}.rss" for f in seed_site.feeds)
    assert sorted(o.get("text") for o in feeds) == sorted(f.name for f in seed_site.feeds)


def test_names_from_records_are_escaped(config: Config, write_records: Callable[[dict[str, Any]], Path]) -> None:
    records = write_records(
        {
            "evil.txt": {
                "title": "Evil",
                "webUrl": "https://evil.example/1",
                "publishedDateTime": "2023-01-01T00:00:00Z",
                "provider": {"name": 'Evil "quoted" & <co>', "domain": "evil.example"},
                "topics": ['Tom & Jerry\'s "show"'],
            }
        }
    )
    config = dataclasses.replace(config, records_dir=records)
    site = build_in_memory(config)
    publish(site.documents, config.output_dir)
    provider = next(f for f in site.feeds if f.key.kind is FeedKind.PROVIDER)
    topic = next(f for f in site.feeds if f.key.kind is FeedKind.TOPIC)
    page = _html(config.output_dir / "index.html")
    names = {"".join(a.itertext()) for a in page.iter("a")}
    assert {provider.name, topic.name} <= names
    opml = etree.parse(str(config.output_dir / "feeds.opml")).getroot()
    assert {provider.name, topic.name} <= {o.get("text") for o in opml.iter("outline")}
    view = _html(config.output_dir / f"{provider.key.path}.html")
    assert [h.text for h in view.iter("h1")] == [provider.name]
    assert view.findtext("head/title") == f"{provider.name} · {config.site.title}"


# -- what the pages say (issue 13.15) -----------------------------------------------------------


def _text(el: Any) -> str:
    return " ".join("".join(el.itertext()).split())


def _record(n: int, **changes: Any) -> Record:
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=n)
    fields: dict[str, Any] = {
        "path": f"r{n}.txt",
        "id": f"urn:uuid:00000000-0000-0000-0000-{n:012d}",
        "canonical_url": f"https://news.example/{n}",
        "title": f"Story {n}",
        "link": f"https://news.example/{n}",
        "published": when,
        "updated": when,
        "excerpt": "",
        "provider": Provider("News", "news.example"),
        **changes,
    }
    return Record(**fields)


SITE = Site("Test site", "Feeds", "en", "https://feeds.example/", 5)


def _count_line(page: Any) -> str:
    (line,) = [p for p in page.iter("p") if p.get("class") == "count"]
    return _text(line)


def _render(feed: Feed, archive_links: list[str] | tuple[str, ...] = ()) -> Any:
    body = render_feed_page(feed, SITE, archive_links)
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(body)


def test_feed_pages_name_their_feed(seed_site: Build, config: Config) -> None:
    titles = set()
    for feed in seed_site.feeds:
        page = _html(config.output_dir / f"{feed.key.path}.html")
        (h1,) = page.iter("h1")
        title = page.findtext("head/title")
        assert _text(h1) == feed.name and title == f"{feed.name} · {config.site.title}"
        titles.add(title)
    assert len(titles) == len(seed_site.feeds)


def test_article_counts_read_as_a_person_writes_them(seed_site: Build, config: Config) -> None:
    lines = {f.key.path: _count_line(_html(config.output_dir / f"{f.key.path}.html")) for f in seed_site.feeds}
    assert lines["feeds/providers/jalopnik.com"] == "1 article."
    assert lines["feeds/all"] == "2 articles."
    assert not any(" of " in line for line in lines.values())
    index = _html(config.output_dir / "index.html")
    facts = {name: _text(li.find("span")) for name, li in _feed_rows(index).items()}
    assert facts["Jalopnik"].startswith("1 article, newest ")
    assert facts["All articles"].startswith("2 articles, newest ")
    # A capped feed without archive pages, and an empty one.
    capped = Feed(ALL, "All articles", tuple(_record(n) for n in (9, 8)), 5)
    assert _count_line(_render(capped)) == "The newest 2 of 5 articles."
    empty = Feed(ALL, "All articles", (), 0)
    assert _count_line(_render(empty)) == "No articles yet."


def test_a_feed_page_links_its_archive_pages(seed_site: Build) -> None:
    """Every archive page the caller names is linked, RSS and Atom, newest first, each link named."""
    key = FeedKey(FeedKind.TOPIC, "ai")
    feed = Feed(key, "AI", tuple(_record(n) for n in (12, 11)), 12, 2)
    pages = ["feeds/topics/ai/archive/first", "feeds/topics/ai/archive/20240101-0a1b2c3d"]
    page = _render(feed, pages)
    assert _count_line(page) == "The newest 2 of 12 articles; the 10 older ones are on the archive pages."
    (section,) = [s for s in page.iter("section") if s.get("id") == "archives"]
    links = [(a.get("href"), _text(a), a.get("aria-label")) for a in section.iter("a")]
    assert [href for href, _, _ in links] == [
        SITE.url(f"{path}.{fmt}") for path in reversed(pages) for fmt in ("rss", "atom")
    ]
    assert {text for _, text, _ in links} == {"RSS", "Atom"}
    labels = [label for _, _, label in links]
    assert len(set(labels)) == len(labels) and all("the topic AI" in label for label in labels)
    assert any(a.get("href") == "#archives" for a in page.iter("a"))
    # Without archive pages the page has no such section, and says nothing of them.
    plain = _render(feed)
    assert not [s for s in plain.iter("section") if s.get("id") == "archives"]


def test_images_have_the_headline_as_alt_and_their_size(seed_site: Build, config: Config) -> None:
    seen = 0
    for feed in seed_site.feeds:
        page = _html(config.output_dir / f"{feed.key.path}.html")
        for article, entry in zip(page.iter("article"), feed.entries, strict=True):
            images = list(article.iter("img"))
            if not entry.images:
                assert not images
                continue
            (img,) = images
            image = entry.images[0]
            assert img.get("alt") == entry.title == _text(article.find("h2"))
            assert (img.get("width"), img.get("height")) == (str(image.width), str(image.height))
            seen += 1
    assert seen
    # Without a known size no size is made up (the stylesheet gives the box a shape).
    unsized = Feed(ALL, "All", (_record(1, images=(Image("https://i.example/a.jpg"),)),), 1)
    (img,) = _render(unsized).iter("img")
    assert img.get("alt") == "Story 1" and img.get("width") is None and img.get("height") is None


def _one_story_per_topic(write_records: Callable[[dict[str, Any]], Path], names: list[str]) -> Path:
    """A folder of records, one per name in `names`, each in that one topic."""
    return write_records(
        {
            f"r{i}.txt": {
                "title": f"Story {i}",
                "webUrl": f"https://news.example/{i}",
                "publishedDateTime": "2023-01-01T00:00:00Z",
                "provider": {"name": "News", "domain": "news.example"},
                "topics": [name],
            }
            for i, name in enumerate(names)
        }
    )


def test_topics_sort_naturally(config: Config, write_records: Callable[[dict[str, Any]], Path]) -> None:
    names = ["Topic 10", "Topic 2", "topic 1", "Topic 1b", "AI", "Zebra", "Topic 100"]
    records = _one_story_per_topic(write_records, names)
    config = dataclasses.replace(config, records_dir=records)
    publish(build_in_memory(config).documents, config.output_dir)
    rows = list(_feed_rows(_html(config.output_dir / "index.html")))
    topics = rows[1 : 1 + len(names)]
    assert topics == ["AI", "topic 1", "Topic 1b", "Topic 2", "Topic 10", "Topic 100", "Zebra"]
    opml = etree.parse(str(config.output_dir / "feeds.opml")).getroot()
    (folder,) = [o for o in opml.iter("outline") if o.get("text") == "Topics"]
    assert [o.get("text") for o in folder] == topics


def test_initialisms_dotted_any_way_are_one_topic(
    config: Config, write_records: Callable[[dict[str, Any]], Path]
) -> None:
    """Issue 13.16: "A.I.", "A.I" and "AI" are one feed, ai; "U.S." and "US" one, us."""
    spellings = ["A.I.", "A.I", "AI", "A.I.", "U.S.", "US"]
    records = _one_story_per_topic(write_records, spellings)
    site = build_in_memory(dataclasses.replace(config, records_dir=records))
    topics = {f.key.slug: f for f in site.feeds if f.key.kind is FeedKind.TOPIC}
    assert set(topics) == {"ai", "us"}
    assert topics["ai"].total == 4 and topics["ai"].name == "A.I."  # the most common spelling
    assert topics["us"].total == 2


# -- the site's look on every page: stylesheet, viewport, favicon (issue 13.13, 13.14) -----------


def test_every_page_has_the_sites_look_the_404_page_too(seed_site: Build, config: Config) -> None:
    base = base_url(config)
    pages = ["index.html", "404.html", *(f"{f.key.path}.html" for f in seed_site.feeds)]
    for path in pages:
        assert seed_site.documents[path].media_type == HTML.content_type
        page = _html(config.output_dir / path)
        head = page.find("head")
        metas = {m.get("name"): m.get("content") for m in head.iter("meta") if m.get("name")}
        assert metas["viewport"] == "width=device-width, initial-scale=1", path
        links = {(link.get("rel"), link.get("href")) for link in head.iter("link")}
        assert {("stylesheet", f"{base}style.css"), ("icon", f"{base}favicon.ico")} <= links, path
    not_found = _html(config.output_dir / "404.html")
    assert [_text(h) for h in not_found.iter("h1")] == ["Not found"]
    assert f"{base}index.html" in {a.get("href") for a in not_found.iter("a")}


def test_the_app_sends_the_built_404_page(config: Config) -> None:
    from conftest import served_app

    client = served_app(config).test_client()
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.headers["Content-Type"] == HTML.content_type
    assert r.data == (config.output_dir / "404.html").read_bytes()


def test_the_favicon_is_a_document_of_the_site(seed_site: Build, config: Config) -> None:
    doc = seed_site.documents["favicon.ico"]
    assert doc.media_type == ICO.content_type == "image/x-icon"
    assert doc.body[:4] == b"\x00\x00\x01\x00" and doc.body[4] > 0  # an ICO file with images
    assert (config.output_dir / "favicon.ico").read_bytes() == doc.body
