"""The documents around the feeds: the HTML index, a browser view per feed, OPML.

Jinja2 with autoescaping writes them, so every value from a record is escaped
as text; the pages carry no script and need none (no XSLT either), so a strict
Content-Security-Policy holds.

A browser shows a raw feed as plain text, so the index's RSS, Atom and JSON
links lead to the feed's page, which says how to subscribe and links the raw
addresses (one click on, and in its autodiscovery links). Every page has the
site's stylesheet, viewport tag and favicon, the 404 page too.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from importlib.resources import files
from typing import Any, Protocol

import jinja2

from feedsvc.formats.common import Site, feed_title
from feedsvc.formats.registry import ARCHIVE_FORMATS, FEED_FORMATS
from feedsvc.model import Feed, FeedKey, FeedKind, Record


class Listed(Protocol):
    """What the index and the OPML need of a feed: a `Feed` or a `FeedSummary`."""

    @property
    def key(self) -> FeedKey: ...
    @property
    def name(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def updated(self) -> datetime | None: ...


#: The templates, the stylesheet and the favicon the pages are made from.
TEMPLATES = files(__package__).joinpath("templates")
#: The one environment over TEMPLATES, for every page made from them (the
#: audience report's too, web/audience/page.py), so each is escaped, strict
#: about missing values and filtered the same way.
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader(__package__, "templates"),
    autoescape=jinja2.select_autoescape(["html", "opml"], default_for_string=True),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
_ENV.filters["thousands"] = lambda n: f"{n:,}"
_ENV.filters["percent"] = lambda share: f"{share:.0%}"
_DIGITS = re.compile(r"(\d+)")
SECTIONS = ((FeedKind.ALL, "All articles"), (FeedKind.TOPIC, "Topics"), (FeedKind.PROVIDER, "Providers"))


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    #: Which feed this is, in words ("the topic AI"): the accessible name of its format links.
    label: str
    total: int
    updated: datetime | None
    html_url: str
    rss_url: str
    atom_url: str
    json_url: str

    @property
    def updated_iso(self) -> str:
        return self.updated.isoformat() if self.updated else ""

    @property
    def updated_text(self) -> str:
        return _human(self.updated) if self.updated else ""


def _rows(feeds: Sequence[Listed], site: Site) -> list[tuple[str, list[_Row]]]:
    sections = []
    for kind, title in SECTIONS:
        rows = [_row(f, site) for f in feeds if f.key.kind is kind]
        rows.sort(key=lambda r: (natural_key(r.name), r.html_url))
        if rows:
            sections.append((title, rows))
    return sections


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sorts names as a person would: case-blind, numbers by value ("Topic 2" before "Topic 10")."""
    parts = _DIGITS.split(name.casefold())
    # Text and numbers alternate (text first), so items at one position always compare.
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def _label(feed: Listed) -> str:
    """The feed in words, telling it from every other feed of the site."""
    if feed.key.kind is FeedKind.TOPIC:
        return f"the topic {feed.name}"
    if feed.key.kind is FeedKind.PROVIDER:
        return f"{feed.name} ({feed.key.slug})"
    return "all articles"


def _row(feed: Listed, site: Site) -> _Row:
    path = feed.key.path
    return _Row(
        name=feed.name,
        label=_label(feed),
        total=feed.total,
        updated=feed.updated,
        html_url=site.url(f"{path}.html"),
        rss_url=site.url(f"{path}.rss"),
        atom_url=site.url(f"{path}.atom"),
        json_url=site.url(f"{path}.json"),
    )


def _autodiscovery(feed: Listed, site: Site) -> list[tuple[str, str, str, str]]:
    title = feed_title(site, feed)
    return [
        (fmt.suffix, fmt.media_type, site.url(f"{feed.key.path}.{fmt.suffix}"), f"{title} ({fmt.label})")
        for fmt in FEED_FORMATS
    ]


def render_index(feeds: Sequence[Listed], site: Site) -> bytes:
    """/index.html: every feed with its size, newest date and subscribe links."""
    all_feeds = [f for f in feeds if f.key.kind is FeedKind.ALL]
    discovery = [a for f in all_feeds for a in _autodiscovery(f, site)]
    return render_template(
        "index.html", site=site, page_title=site.title, sections=_rows(feeds, site), autodiscovery=discovery
    )


def render_feed_page(feed: Feed, site: Site, archive_links: Sequence[str] = ()) -> bytes:
    """/feeds/…/<key>.html: a feed's entries as a page, and how to subscribe.

    `archive_links` are the paths of the feed's archive pages, oldest first,
    without extension (as `ArchivePage.path`): each is linked in every format
    it is written in (RSS and Atom), so the entries the page does not show are
    a click away.
    """
    older = feed.total - len(feed.entries)
    return render_template(
        "feed.html",
        site=site,
        page_title=f"{feed.name} · {site.title}",
        name=feed.name,
        label=_label(feed),
        autodiscovery=_autodiscovery(feed, site),
        rss_url=site.url(f"{feed.key.path}.rss"),
        atom_url=site.url(f"{feed.key.path}.atom"),
        json_url=site.url(f"{feed.key.path}.json"),
        entries=[_entry(r) for r in feed.entries],
        total=feed.total,
        older=older,
        archives=[
            (number, [(fmt.label, site.url(f"{path}.{fmt.suffix}")) for fmt in ARCHIVE_FORMATS])
            for number, path in reversed(list(enumerate(archive_links, start=1)))
        ],
    )


def render_not_found(site: Site) -> bytes:
    """The 404 page, with the site's look: the build writes it as /404.html, the app sends it."""
    return render_template("404.html", site=site, page_title=f"Not found · {site.title}", autodiscovery=[])


def render_opml(feeds: Sequence[Listed], site: Site) -> bytes:
    """/feeds.opml: OPML 2.0 listing every feed, for one-click import.

    Each feed is listed once, as RSS: OPML's ``type="rss"`` outlines are what
    feed readers import, and few of them read JSON Feed.
    """
    newest = max((f.updated for f in feeds if f.updated), default=None)
    updated = format_datetime(newest) if newest else None
    return render_template("feeds.opml", site=site, sections=_rows(feeds, site), updated=updated)


def stylesheet() -> bytes:
    return TEMPLATES.joinpath("style.css").read_bytes()


def favicon() -> bytes:
    """/favicon.ico: what browsers ask for on every page load (linked from every page too)."""
    return TEMPLATES.joinpath("favicon.ico").read_bytes()


def _entry(r: Record) -> dict[str, Any]:
    return {
        "title": r.title,
        "link": r.link,
        "excerpt": r.excerpt,
        "provider": r.provider.name,
        "published_iso": r.published.isoformat(),
        "published_text": _human(r.published),
        "topics": list(r.topics),
        "image": r.images[0] if r.images else None,
        "related": list(r.related),
    }


def _human(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def render_template(template: str, **context: Any) -> bytes:
    """The file `template` of TEMPLATES rendered with `context`, as UTF-8."""
    return _ENV.get_template(template).render(**context).encode("utf-8")


@functools.lru_cache(maxsize=1)
def templates_digest() -> str:
    """SHA-256 over the names and bytes of every file the pages are made from (the build's fingerprint)."""
    h = hashlib.sha256()
    for path in sorted(TEMPLATES.iterdir(), key=lambda p: p.name):
        h.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
