"""The documents of a site (`model.Document`: URL path → bytes, media type, date).

`feedsvc build` (`build/render.py`) renders feeds and archive pages with the
functions here and writes the documents to disk; `feedsvc serve` sends those
files. `build_in_memory`/`assemble` make a whole site in memory from loaded records, in
one go: the reference the incremental build is tested against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import RecordError
from feedsvc.feeds.rules import build_feeds_and_archives, select
from feedsvc.formats.common import Site
from feedsvc.formats.html import (
    Listed,
    favicon,
    render_feed_page,
    render_index,
    render_not_found,
    render_opml,
    stylesheet,
)
from feedsvc.formats.registry import ARCHIVE_FORMATS, CSS, FEED_FORMATS, HTML, ICO, INDEX, OPML, OPML_LIST
from feedsvc.model import ArchivePage, Document, Feed, FeedKey, archive_path
from feedsvc.records.read import LoadResult, load_records


@dataclass(frozen=True)
class Build:
    """One consistent state of the site: what was loaded and what it gives."""

    documents: Mapping[str, Document]
    feeds: tuple[Feed, ...]
    loaded: LoadResult
    #: Warnings from choosing records (duplicates), beside the loader's problems.
    selection_problems: tuple[RecordError, ...] = ()
    #: Each archive page, by feed and page name.
    pages: Mapping[tuple[FeedKey, str], ArchivePage] = field(default_factory=dict, repr=False)

    @property
    def problems(self) -> tuple[RecordError, ...]:
        return self.loaded.problems + self.selection_problems


def build_in_memory(config: Config, records_dir: Path | None = None) -> Build:
    """Load the records and render every document."""
    loaded = load_records(records_dir or config.records_dir, config)
    return assemble(loaded, config)


def assemble(loaded: LoadResult, config: Config) -> Build:
    """Every document for `loaded`."""
    selection = select(loaded.records, config)
    built, archived = build_feeds_and_archives(selection.records, config)
    feeds = tuple(built)
    site = Site.from_config(config)
    documents: dict[str, Document] = {}
    for feed in feeds:
        documents.update((doc.path, doc) for doc in feed_documents(feed, site))
    for page in archived:
        documents.update((doc.path, doc) for doc in archive_documents(page, site))
    for doc in site_documents(feeds, site):
        documents[doc.path] = doc
    pages = {(page.key, page.page): page for page in archived}
    return Build(documents, feeds, loaded, selection.problems, pages)


def feed_documents(feed: Feed, site: Site) -> tuple[Document, ...]:
    """A feed in every format (RSS, Atom, JSON Feed), plus its browser view.

    The browser view links the feed's archive pages (`Feed.pages`, oldest
    first; see `pages.render_feed_page`), as the RSS and Atom documents do.
    """
    path = feed.key.path
    archive_links = [archive_path(feed.key, page) for page in feed.pages]
    docs = [
        Document(f"{path}.{fmt.suffix}", fmt.render(feed, site), fmt.content_type, feed.updated) for fmt in FEED_FORMATS
    ]
    docs.append(Document(f"{path}.html", render_feed_page(feed, site, archive_links), HTML.content_type, feed.updated))
    return tuple(docs)


def archive_documents(page: ArchivePage, site: Site) -> tuple[Document, ...]:
    """An archive page in RSS and Atom, served with the archive cache policy (`served.ARCHIVE`)."""
    return tuple(
        Document(f"{page.path}.{fmt.suffix}", fmt.archive(page, site), fmt.content_type, page.updated, archive=True)
        for fmt in ARCHIVE_FORMATS
    )


def site_documents(feeds: Sequence[Listed], site: Site) -> list[Document]:
    """The documents that list feeds (index, OPML), and the site's stylesheet, favicon and 404 page."""
    newest = max((f.updated for f in feeds if f.updated), default=None)
    return [
        Document(INDEX, render_index(feeds, site), HTML.content_type, newest),
        Document(OPML_LIST, render_opml(feeds, site), OPML.content_type, newest),
        Document("style.css", stylesheet(), CSS.content_type, None),
        Document("favicon.ico", favicon(), ICO.content_type, None),
        # The body of every 404 (the app's, and nginx's error_page).
        Document("404.html", render_not_found(site), HTML.content_type, None),
    ]
