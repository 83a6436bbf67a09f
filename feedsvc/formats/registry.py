"""Every format feedsvc writes, in one table, and what a URL path names.

Anything that asks "which formats", "what media type", "is this a feed" or
"which feed is this path" asks here: the build (which documents a feed has),
the pages (autodiscovery links and labels), custom feeds (which formats take
a query), the web app (hub links), metrics and WebSub (which paths are
feeds). A new feed format is one row here plus its renderer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from feedsvc.formats import jsonfeed, rss_atom
from feedsvc.model import ALL, ARCHIVE_DIR, FEEDS_DIR, FeedKey, FeedKind


@dataclass(frozen=True, slots=True)
class Format:
    #: The file suffix (without the dot), which is also the format's name in URLs.
    suffix: str
    #: The media type, bare, as `type=` attributes and autodiscovery links give it.
    media_type: str
    #: What pages call it ("RSS", "JSON Feed").
    label: str

    @property
    def content_type(self) -> str:
        """The Content-Type sent: text formats say their charset (always UTF-8)."""
        binary = self.media_type.startswith("image/")
        return self.media_type if binary else f"{self.media_type}; charset=utf-8"


@dataclass(frozen=True, slots=True)
class FeedFormat(Format):
    """A format feeds are written in: readers subscribe to it, and it answers custom-feed queries."""

    #: Renders a feed: (`Feed`, `Site`, query=, title=) → bytes.
    render: Callable[..., bytes]
    #: Renders an archive page (RFC 5005), if the format has them: (`ArchivePage`, `Site`) → bytes.
    render_archive: Callable[..., bytes] | None = None
    #: Whether a query (?topic=…) makes a custom feed of it (web/custom.py).
    queries: bool = True

    def archive(self, page: Any, site: Any) -> bytes:
        assert self.render_archive is not None, f"{self.label} has no archive pages"
        return self.render_archive(page, site)


# The renderers are looked up when called, not bound here, so a test can
# replace one (tests/feeds/test_archives.py proves the web app renders nothing).
def _rss_atom(fmt: str) -> Callable[..., bytes]:
    def render(feed: Any, site: Any, **options: Any) -> bytes:
        return rss_atom.render_feed(feed, site, fmt, **options)

    return render


def _rss_atom_archive(fmt: str) -> Callable[..., bytes]:
    def render(page: Any, site: Any) -> bytes:
        return rss_atom.render_archive(page, site, fmt)

    return render


RSS = FeedFormat("rss", rss_atom.MEDIA_TYPES["rss"], "RSS", _rss_atom("rss"), _rss_atom_archive("rss"))
ATOM = FeedFormat("atom", rss_atom.MEDIA_TYPES["atom"], "Atom", _rss_atom("atom"), _rss_atom_archive("atom"))
JSON = FeedFormat(
    "json", jsonfeed.MEDIA_TYPE, "JSON Feed", lambda feed, site, **options: jsonfeed.render_json(feed, site, **options)
)
HTML = Format("html", "text/html", "HTML")
OPML = Format("opml", "text/x-opml", "OPML")
CSS = Format("css", "text/css", "CSS")
ICO = Format("ico", "image/x-icon", "icon")

#: Every format, by suffix; the feed formats in the order pages list them.
FORMATS: dict[str, Format] = {f.suffix: f for f in (RSS, ATOM, JSON, HTML, OPML, CSS, ICO)}
FEED_FORMATS: tuple[FeedFormat, ...] = (RSS, ATOM, JSON)
#: The feed formats with archive pages (JSON Feed has no such mechanism).
ARCHIVE_FORMATS = tuple(f for f in FEED_FORMATS if f.render_archive is not None)
#: The suffixes of feed documents, dot included (for `str.endswith`).
FEED_SUFFIXES = tuple(f".{f.suffix}" for f in FEED_FORMATS)
#: The documents that list the others: written last, after what they list.
INDEX = "index.html"
OPML_LIST = "feeds.opml"
LISTINGS = (INDEX, OPML_LIST)


def content_type(path: str) -> str:
    """The Content-Type of the document at URL path `path`, by its suffix."""
    return FORMATS[path.rsplit(".", 1)[-1]].content_type


@dataclass(frozen=True, slots=True)
class FeedPath:
    """What a feed document's URL path names: the feed, the format, and the archive page if one."""

    key: FeedKey
    format: FeedFormat
    #: The archive page's name; None for the subscription document.
    page: str | None = None


#: Asked once per request (metrics, the audience, hub links): the paths in use are
#: few, so each is parsed once; a flood of odd ones only cycles the cache.
@lru_cache(maxsize=4096)
def feed_path(path: str) -> FeedPath | None:
    """The feed document `path` names ("feeds/topics/ai.atom", "feeds/all/archive/first.rss"), if any.

    Only the shape is checked (`FeedKey.path` and `model.archive_path` write
    it); whether that feed exists is the cache's to say. A leading "/" is allowed.
    """
    stem, dot, suffix = path.lstrip("/").rpartition(".")
    fmt = FORMATS.get(suffix) if dot else None
    if not isinstance(fmt, FeedFormat):
        return None
    parts = stem.split("/")
    page = None
    if len(parts) >= 3 and parts[-2] == ARCHIVE_DIR:
        if fmt.render_archive is None:
            return None
        page, parts = parts[-1], parts[:-2]
    if parts == [FEEDS_DIR, "all"]:
        return FeedPath(ALL, fmt, page)
    if len(parts) == 3 and parts[0] == FEEDS_DIR and parts[2]:
        for kind in (FeedKind.TOPIC, FeedKind.PROVIDER):
            if parts[1] == kind.value:
                return FeedPath(FeedKey(kind, parts[2]), fmt, page)
    return None


def is_subscription(path: str) -> bool:
    """Whether `path` is a feed's subscription document (not an archive page, not a page)."""
    named = feed_path(path)
    return named is not None and named.page is None
