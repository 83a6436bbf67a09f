"""The whole published tree as documents: URL path → bytes, media type, date.

`feedsvc build` writes these documents to disk and the web app serves them, so
a static file and an HTTP response are always the same bytes. Rendering is
keyed by the `Feed` value: a feed whose entries did not change is not rendered
again, which is what makes a live reload or a rebuild after one changed record
cheap. Archive pages (RFC 5005) are kept by feed and page number and reused
while they hold the very same records (compared by identity first: a reload
keeps the `Record` of every unchanged file), so a reload renders only the
pages that changed, without hashing every archived record.

The web app asks for archive pages to be made lazily (`assemble(...,
lazy_pages=True)`): a page is rendered once, on its first request, and kept.
A big site has tens of thousands of pages, which readers seldom fetch and
proxies cache for a year; rendering them all in every worker at startup would
cost minutes of CPU for nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .config import Config
from .errors import RecordError
from .feeds import build_feeds_and_archives, select
from .jsonfeed import render_json
from .model import ArchivePage, Feed, FeedKey
from .pages import render_feed_page, render_index, render_opml, stylesheet
from .records import LoadResult, load_records
from .render import FORMATS, Site, render_archive, render_feed

MEDIA_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "opml": "text/x-opml; charset=utf-8",
    "css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Document:
    #: URL path without the leading slash, e.g. "feeds/topics/ai.atom".
    path: str
    body: bytes
    media_type: str
    #: The newest entry's updated time (Last-Modified); None for the stylesheet.
    last_modified: datetime | None = None
    #: Never changes at this path (a full archive page): cacheable for a year.
    immutable: bool = False


@dataclass(frozen=True)
class Build:
    """One consistent state of the site: what was loaded and what it gives."""

    documents: Mapping[str, Document]
    feeds: tuple[Feed, ...]
    loaded: LoadResult
    #: Warnings from choosing records (duplicates), beside the loader's problems.
    selection_problems: tuple[RecordError, ...] = ()
    #: Rendered documents per feed, reused by the next build when a feed is unchanged.
    cache: Mapping[Feed, tuple[Document, ...]] = field(default_factory=dict, repr=False)
    #: Each archive page (and its documents once rendered), by feed and page number.
    pages: Mapping[tuple[FeedKey, int], PageSlot] = field(default_factory=dict, repr=False)
    #: With lazy pages: URL path → (page, index in its documents) of each page
    #: document, which is then not in `documents`.
    lazy: Mapping[str, tuple[PageSlot, int]] = field(default_factory=dict, repr=False)

    @property
    def problems(self) -> tuple[RecordError, ...]:
        return self.loaded.problems + self.selection_problems


def build(config: Config, records_dir: Path | None = None) -> Build:
    """Load the records and render every document."""
    loaded = load_records(records_dir or config.records_dir, config)
    return assemble(loaded, config)


def assemble(loaded: LoadResult, config: Config, previous: Build | None = None, *, lazy_pages: bool = False) -> Build:
    """Every document for `loaded`, reusing `previous`'s for unchanged feeds and pages.

    With `lazy_pages`, archive pages are listed in `Build.lazy` and rendered
    when first asked for, instead of now.
    """
    selection = select(loaded.records, config)
    built, archived = build_feeds_and_archives(selection.records, config)
    feeds = tuple(built)
    site = Site.from_config(config)
    old = previous.cache if previous else {}
    cache = {f: old.get(f) or feed_documents(f, site) for f in feeds}
    old_pages = previous.pages if previous else {}
    pages: dict[tuple[FeedKey, int], PageSlot] = {}
    for page in archived:
        key = (page.key, page.number)
        before = old_pages.get(key)
        pages[key] = before if before is not None and same_page(before.page, page) else PageSlot(page, site)
    documents: dict[str, Document] = {}
    lazy: dict[str, tuple[PageSlot, int]] = {}
    for docs in cache.values():
        for doc in docs:
            documents[doc.path] = doc
    for slot in pages.values():
        if lazy_pages:
            lazy.update((path, (slot, i)) for i, path in enumerate(slot.paths))
        else:
            documents.update((doc.path, doc) for doc in slot.documents())
    for doc in site_documents(feeds, site):
        documents[doc.path] = doc
    return Build(documents, feeds, loaded, selection.problems, cache, pages, lazy)


class PageSlot:
    """An archive page and its documents, rendered at most once, when first needed.

    Shared by every build that holds the same page, and by the threads that
    serve it: rendering happens under a lock, so a page is rendered once.
    """

    __slots__ = ("page", "paths", "_site", "_documents", "_derived", "_lock")

    def __init__(self, page: ArchivePage, site: Site) -> None:
        self.page = page
        #: The URL paths of its documents, in `documents()` order (known unrendered).
        self.paths = tuple(f"{page.path}.{fmt}" for fmt in FORMATS)
        self._site = site
        self._documents: tuple[Document, ...] | None = None
        self._derived: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def rendered(self) -> bool:
        return self._documents is not None

    def documents(self) -> tuple[Document, ...]:
        with self._lock:
            if self._documents is None:
                self._documents = archive_documents(self.page, self._site)
            return self._documents

    def derived(self, key: str, make: Callable[[tuple[Document, ...]], object]) -> object:
        """`make(documents)`, made once per key and kept (the web app's prepared forms)."""
        docs = self.documents()
        with self._lock:
            if key not in self._derived:
                self._derived[key] = make(docs)
            return self._derived[key]


def same_page(old: ArchivePage, new: ArchivePage) -> bool:
    """Whether `new` renders exactly as `old`: same name and the same records.

    Records of unchanged files are the same objects from one reload to the
    next, so this is mostly pointer comparisons, not hashing whole records.
    """
    return old.name == new.name and len(old.entries) == len(new.entries) and all(
        a is b or a == b for a, b in zip(old.entries, new.entries)
    )


def feed_documents(feed: Feed, site: Site) -> tuple[Document, ...]:
    """A feed in every format (RSS, Atom, JSON Feed), plus its browser view."""
    path = feed.key.path
    docs = [
        Document(f"{path}.{fmt}", render_feed(feed, site, fmt), MEDIA_TYPES[fmt], feed.updated)
        for fmt in FORMATS
    ]
    docs.append(Document(f"{path}.json", render_json(feed, site), MEDIA_TYPES["json"], feed.updated))
    docs.append(Document(f"{path}.html", render_feed_page(feed, site), MEDIA_TYPES["html"], feed.updated))
    return tuple(docs)


def archive_documents(page: ArchivePage, site: Site) -> tuple[Document, ...]:
    """An archive page in RSS and Atom; each is immutable once cut (see `archives`)."""
    return tuple(
        Document(f"{page.path}.{fmt}", render_archive(page, site, fmt), MEDIA_TYPES[fmt], page.updated, immutable=True)
        for fmt in FORMATS
    )


def site_documents(feeds: Sequence[Feed], site: Site) -> list[Document]:
    """The documents that list feeds: index, OPML, and the stylesheet."""
    newest = max((f.updated for f in feeds if f.updated), default=None)
    return [
        Document("index.html", render_index(feeds, site), MEDIA_TYPES["html"], newest),
        Document("feeds.opml", render_opml(feeds, site), MEDIA_TYPES["opml"], newest),
        Document("style.css", stylesheet(), MEDIA_TYPES["css"], None),
    ]
