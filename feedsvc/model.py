"""The data model: typed, frozen dataclasses that cross module boundaries.

Datetimes are timezone-aware UTC from the moment a record is loaded. A `Record`
holds only what may be published: the loader never copies `secured` into it, so
nothing downstream can leak it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


@dataclass(frozen=True, slots=True)
class Provider:
    #: Display name ("The Guardian").
    name: str
    #: Normalised domain, the key of the provider's feed ("theguardian.com").
    domain: str


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Related:
    title: str
    url: str
    provider_name: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    #: The file this record came from, relative to records_dir (for messages).
    path: str
    #: Entry id: ``urn:uuid:`` + UUID5 of the canonical URL; the same everywhere.
    id: str
    #: originalUrl, else webUrl, normalised; what makes two files one article.
    canonical_url: str
    title: str
    #: webUrl, else originalUrl: where a reader goes to read the article.
    link: str
    published: datetime
    updated: datetime
    excerpt: str
    provider: Provider
    #: Topic names as written (cleaned), in record order, without duplicates.
    topics: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    related: tuple[Related, ...] = ()
    category: str | None = None
    type: str | None = None
    quality: float = 0.0
    heat: int | None = None
    #: The record's `published` flag (default true when absent).
    is_published: bool = True


#: The folder every feed is under, and the folder of each feed's archive pages.
FEEDS_DIR = "feeds"
ARCHIVE_DIR = "archive"


class FeedKind(str, Enum):
    ALL = "all"
    TOPIC = "topics"
    PROVIDER = "providers"


@dataclass(frozen=True, slots=True, order=True)
class FeedKey:
    kind: FeedKind
    #: "all", a topic slug, or a provider domain; safe as one path segment.
    slug: str

    @property
    def text(self) -> str:
        """The key as the cache stores it, "<kind>/<slug>" (`from_text` reads it)."""
        return f"{self.kind.value}/{self.slug}"

    @classmethod
    def from_text(cls, text: str) -> FeedKey:
        kind, slug = text.split("/", 1)
        return cls(FeedKind(kind), slug)

    @property
    def path(self) -> str:
        """URL path of the feed without extension, e.g. ``feeds/topics/ai`` (`formats.registry.feed_path` reads it)."""
        if self.kind is FeedKind.ALL:
            return f"{FEEDS_DIR}/all"
        return f"{FEEDS_DIR}/{self.kind.value}/{self.slug}"


#: The all-articles feed: every published record is in it.
ALL = FeedKey(FeedKind.ALL, "all")


@dataclass(frozen=True, slots=True)
class Feed:
    key: FeedKey
    #: Display name of the topic or provider ("All articles" for the all-feed).
    name: str
    #: Entries newest first, at most max_entries: those no archive page holds.
    entries: tuple[Record, ...]
    #: Records in the feed before the cap (the index shows it).
    total: int
    #: Archive pages (RFC 5005) holding the older entries; 0 when none.
    archives: int = 0
    #: The names of its archive pages (`archive_path`), oldest first; the last
    #: is the one the subscription document's rel="prev-archive" names.
    pages: tuple[str, ...] = ()

    @property
    def updated(self) -> datetime | None:
        """The newest entry's updated time: the feed's own, never the build time."""
        return max((r.updated for r in self.entries), default=None)


@dataclass(frozen=True, slots=True)
class ArchivePage:
    """One archive page of a feed's older entries (RFC 5005 archive document).

    Where pages start is content-defined (`archives.layout`), so a page keeps
    its name and its entries while records change elsewhere in the feed.
    """

    key: FeedKey
    #: The feed's display name, as in `Feed.name`.
    name: str
    #: The page's name in its URL: ``first`` (the oldest page) or ``<yyyymmdd>-<hash8>``.
    page: str
    #: The page's entries, newest first.
    entries: tuple[Record, ...]
    #: The name of the page just older (rel="prev-archive"); None for the first page.
    prev: str | None = None
    #: The name of the page just newer (rel="next-archive"); None for the newest
    #: page, whose next document is the feed's subscription document.
    next: str | None = None

    @property
    def path(self) -> str:
        """URL path without extension, e.g. ``feeds/topics/ai/archive/20230601-3f2a9b1c``."""
        return archive_path(self.key, self.page)

    @property
    def updated(self) -> datetime | None:
        return max((r.updated for r in self.entries), default=None)


def archive_path(key: FeedKey, page: str) -> str:
    """URL path, without extension, of the archive page named `page` of the feed `key`."""
    return f"{key.path}/{ARCHIVE_DIR}/{page}"


@dataclass(frozen=True, slots=True)
class FeedSummary:
    """What the index and the OPML say of a feed, without its entries."""

    key: FeedKey
    name: str
    total: int
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class Document:
    """One file of the site as the build makes it: URL path, bytes, media type, date."""

    #: URL path without the leading slash, e.g. "feeds/topics/ai.atom".
    path: str
    body: bytes
    media_type: str
    #: The newest entry's updated time (Last-Modified); None for the stylesheet.
    last_modified: datetime | None = None
    #: An archive page: cached longer than a feed, and revalidated (`served.ARCHIVE`).
    archive: bool = False
    #: Its gzip form (`formats.compress`) once computed (`compress.with_gzip`); b"" when
    #: gzip would not make it smaller, None when not computed yet.
    packed: bytes | None = field(default=None, repr=False, compare=False)
