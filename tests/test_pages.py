"""pages.py: the HTML index, the browser view of each feed, and the OPML list."""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Callable
from pathlib import Path
from typing import Any

import html5lib
from lxml import etree

from feedsvc.config import Config
from feedsvc.model import FeedKind
from feedsvc.publish import publish
from feedsvc.site import Build, build


def _html(path: Path) -> Any:
    """The page parsed by a strict HTML parser (a parse error fails the test)."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(path.read_bytes())


def _feed_urls(site: Build, base: str) -> dict[str, tuple[str, str, str, str]]:
    return {
        f.name: tuple(f"{base}{f.key.path}.{ext}" for ext in ("html", "rss", "atom", "json"))  # type: ignore[misc]
        for f in site.feeds
    }


def test_the_index_links_every_feed(seed_site: Build, config: Config) -> None:
    page = _html(config.output_dir / "index.html")
    hrefs = {a.get("href") for a in page.iter("a")}
    urls = _feed_urls(seed_site, config.site.base_url)
    assert len(urls) == 5
    for name, (html_url, rss_url, atom_url, json_url) in urls.items():
        assert {html_url, rss_url, atom_url, json_url} <= hrefs, name
    rows = {"".join(tr.find("td/a").itertext()): tr for tr in page.iter("tr") if tr.find("td/a") is not None}
    assert set(rows) == set(urls)
    counts = {name: int(tr.findall("td")[1].text) for name, tr in rows.items()}
    assert counts == {f.name: f.total for f in seed_site.feeds}


def test_the_index_has_autodiscovery_for_the_all_feeds(seed_site: Build, config: Config) -> None:
    page = _html(config.output_dir / "index.html")
    alternates = {
        (link.get("type"), link.get("href"))
        for link in page.iter("link")
        if link.get("rel") == "alternate"
    }
    base = config.site.base_url
    assert alternates == {
        ("application/rss+xml", f"{base}feeds/all.rss"),
        ("application/atom+xml", f"{base}feeds/all.atom"),
        ("application/feed+json", f"{base}feeds/all.json"),
    }


def test_each_feed_page_lists_its_entries_and_discovers_its_feeds(seed_site: Build, config: Config) -> None:
    base = config.site.base_url
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
    base = config.site.base_url
    assert sorted(o.get("xmlUrl") for o in feeds) == sorted(f"{base}{f.key.path}.rss" for f in seed_site.feeds)
    assert sorted(o.get("text") for o in feeds) == sorted(f.name for f in seed_site.feeds)


def test_names_from_records_are_escaped(
    config: Config, write_records: Callable[[dict[str, Any]], Path]
) -> None:
    records = write_records(
        {
            "evil.txt": {
                "title": "Evil",
                "webUrl": "https://evil.example/1",
                "publishedDateTime": "2023-01-01T00:00:00Z",
                "provider": {"name": "Evil \"quoted\" & <co>", "domain": "evil.example"},
                "topics": ["Tom & Jerry's \"show\""],
            }
        }
    )
    config = dataclasses.replace(config, records_dir=records)
    site = build(config)
    publish(site.documents, config.output_dir)
    provider = next(f for f in site.feeds if f.key.kind is FeedKind.PROVIDER)
    topic = next(f for f in site.feeds if f.key.kind is FeedKind.TOPIC)
    page = _html(config.output_dir / "index.html")
    names = {"".join(a.itertext()) for a in page.iter("a")}
    assert {provider.name, topic.name} <= names
    opml = etree.parse(str(config.output_dir / "feeds.opml")).getroot()
    assert {provider.name, topic.name} <= {o.get("text") for o in opml.iter("outline")}
    view = _html(config.output_dir / f"{provider.key.path}.html")
    assert [h.text for h in view.iter("h1")] == [f"{config.site.title}: {provider.name}"]
