"""Feeds as bytes: RSS 2.0 and Atom 1.0 written by feedgen.

This module decides how each field is written, never what is in a feed. Every
value feedgen would take from the clock (lastBuildDate, updated, generator
version) is set from the records, so the same feed always gives the same bytes.

The entry mapping, in one place (docs/design.md explains each choice):

=============  ===============================  ====================================
record         Atom                             RSS 2.0
=============  ===============================  ====================================
id             <id>                             <guid isPermaLink="false">
title          <title type="text">              <title>
link           <link rel="alternate">           <link>
published      <published>                      <pubDate>
updated        <updated>                        (none)
excerpt        <summary type="text">            <description> (HTML-escaped)
excerpt+image  <content type="html">            <content:encoded>
+related
provider       <author><name><uri>              <dc:creator>
topics         <category term=slug label=name>  <category>name</category>
images         media:content, media:thumbnail   media:content, media:thumbnail
lead image     <link rel="enclosure" type>      (media:content only)
related        <link rel="related" title>       (content:encoded only)
=============  ===============================  ====================================
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.ext.dc import DcEntryExtension, DcExtension
from feedgen.ext.media import MediaEntryExtension, MediaExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from feedsvc import __version__
from feedsvc.formats.common import (
    Site,
    content_html,
    entry_updated_times,
    feed_title,
    plain,
    safe_url,
    size_attributes,
)
from feedsvc.model import ALL, ArchivePage, Feed, Record, archive_path
from feedsvc.text import image_media_type, topic_slug

#: The date an empty feed claims: fixed, so an empty feed is deterministic too.
EMPTY_FEED_DATE = datetime(2000, 1, 1, tzinfo=UTC)
#: The media types of the two formats written here (`formats.registry` lists every format).
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
ATOM_NS = "http://www.w3.org/2005/Atom"
#: RFC 5005 feed history: `<fh:archive/>` marks an archive document.
FH_NS = "http://purl.org/syndication/history/1.0"

#: The feed and site the entry fragments are written in: any will do (see `Fragments`).
_FRAGMENT_FEED = Feed(key=ALL, name="", entries=(), total=0)
_FRAGMENT_SITE = Site(title="-", description="-", language="en", base_url="http://localhost/", ttl_minutes=1)


def render_feed(feed: Feed, site: Site, fmt: str, *, query: str = "", title: str | None = None) -> bytes:
    """The feed in `fmt` ("rss" or "atom") as UTF-8 XML bytes.

    `query` (canonical, without "?") makes it a custom feed: its self link and
    Atom id carry the query, and `title` replaces the usual title.
    """
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown feed format {fmt!r}; known: {', '.join(MEDIA_TYPES)}")
    updated = entry_updated_times(feed.entries)
    fg = _generator(feed, site, fmt, max(updated, default=EMPTY_FEED_DATE), query, title)
    if feed.pages and not query:
        # RFC 5005 §4: the subscription document points at the newest page.
        _history(fg, archive=False, links=(
            ("current", site.feed_url(feed, fmt), MEDIA_TYPES[fmt]),
            ("prev-archive", site.url(f"{archive_path(feed.key, feed.pages[-1])}.{fmt}"), MEDIA_TYPES[fmt]),
        ))  # fmt: skip
    return _finish(fg, feed.entries, updated, fmt)


def render_archive(page: ArchivePage, site: Site, fmt: str) -> bytes:
    """Archive page `page` in `fmt` ("rss" or "atom") as UTF-8 XML bytes (RFC 5005 §4).

    The same feed id as the subscription document (one logical feed), its own
    self link, ``<fh:archive/>``, rel="current" to the subscription document,
    rel="prev-archive" to the page just older (none on the first page) and
    rel="next-archive" to the page just newer. The newest page's next
    document is the subscription document, so its next-archive names that:
    every page has an archive link (the W3C validator warns "Archive
    incomplete" on one without), and a reader walking forward ends where it
    would subscribe. Both neighbours' names come from `archives.layout`; the
    next one is the entry that ends this page, so it changes only when this
    page's entries do. No WebSub hub: a reader subscribes to the feed, not to
    a page. The title says where the page starts, never its position.
    """
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown feed format {fmt!r}; known: {', '.join(MEDIA_TYPES)}")
    updated = entry_updated_times(page.entries)
    since = page.entries[-1].published.astimezone(UTC).date().isoformat() if page.entries else ""
    title = f"{feed_title(site, page)} (archive from {since})"
    self_url = site.url(f"{page.path}.{fmt}")
    fg = _generator(page, site, fmt, max(updated, default=EMPTY_FEED_DATE), "", title, self_url=self_url)
    current = site.feed_url(page, fmt)
    links = [("current", current, MEDIA_TYPES[fmt])]
    if page.prev is not None:
        links.append(("prev-archive", site.url(f"{archive_path(page.key, page.prev)}.{fmt}"), MEDIA_TYPES[fmt]))
    newer = site.url(f"{archive_path(page.key, page.next)}.{fmt}") if page.next is not None else current
    links.append(("next-archive", newer, MEDIA_TYPES[fmt]))
    _history(fg, archive=True, links=tuple(links))
    return _finish(fg, page.entries, updated, fmt)


def _finish(fg: FeedGenerator, entries: Sequence[Record], updated: Sequence[datetime], fmt: str) -> bytes:
    if _FRAGMENTS.limit:
        return _splice(_serialize(fg, fmt), _FRAGMENTS.get(entries, updated, fmt), fmt)
    for record, when in zip(entries, updated, strict=True):
        _entry(fg.add_entry(order="append"), record, when)
    return _serialize(fg, fmt)


def _serialize(fg: FeedGenerator, fmt: str) -> bytes:
    return bytes(fg.atom_str(pretty=True) if fmt == "atom" else fg.rss_str(pretty=True))


#: Where entries go in a serialized document: before the root's (Atom) or the
#: channel's (RSS) closing tag, which ends the document.
_ENTRIES_END = {"atom": b"</feed>\n", "rss": b"  </channel>\n</rss>\n"}
#: How a serialized entry begins at its depth (pretty-printed: two spaces a level).
_ENTRY_START = {"atom": b"\n  <entry>", "rss": b"\n    <item>"}


def _splice(head: bytes, fragments: Sequence[bytes], fmt: str) -> bytes:
    """The document feedgen writes for `head`'s feed with these entries: they go before its end."""
    end = _ENTRIES_END[fmt]
    assert head.endswith(end), "feedgen's document no longer ends where entries go"
    return head[: -len(end)] + b"".join(fragments) + end


class Fragments:
    """Serialized entries, each written once and reused in every document that holds it.

    A record is in the all-articles feed, in a feed per topic and per provider,
    and with archives on in one page of each: feedgen would build and
    serialize the same entry eight times or more. lxml writes an element the
    same way wherever it stands at the same depth under a root that declares
    the same namespaces, so the bytes feedgen writes for a one-entry document
    are that entry's bytes in any feed (the feed-level elements never depend
    on the entries: `_generator` sets every one of them). tests/formats/test_render.py
    holds every spliced document to feedgen's own, byte for byte.

    Off (`limit` 0) unless a build turns it on (`keep`): a web worker renders
    few custom feeds and keeps them whole. The cache keeps the `limit` most
    recently used entries; the build renders pages in date order, so the
    feeds that share an entry ask for it close together. An entry is known by
    its record's path, its updated time and the format: while it is on (each
    `keep` starts afresh: once per render, in each render process) a path
    names one record, and a small key keeps no record alive and hashes fast.
    """

    def __init__(self) -> None:
        self.limit = 0
        self._kept: dict[tuple[str, datetime, str], bytes] = {}
        self._writer: FeedGenerator | None = None

    def keep(self, limit: int) -> None:
        self.limit = limit
        self._kept.clear()

    def get(self, entries: Sequence[Record], updated: Sequence[datetime], fmt: str) -> list[bytes]:
        """The serialized entries, in order; those not kept are written in one document per format.

        An entry missing in one format is written in both from the same
        feedgen entries (`_write`): a feed's RSS and Atom documents are
        rendered one after the other, so the second finds it kept.
        """
        keys = [(r.path, when, fmt) for r, when in zip(entries, updated, strict=True)]
        found: list[bytes | None] = [self._kept.pop(key, None) for key in keys]
        missing = [i for i, got in enumerate(found) if got is None]
        if missing:
            written = self._write([(entries[i], updated[i]) for i in missing])
            for other, fragments in written.items():
                if other == fmt:
                    for i, fragment in zip(missing, fragments, strict=True):
                        found[i] = fragment
                else:
                    for i, fragment in zip(missing, fragments, strict=True):
                        self._kept[(entries[i].path, updated[i], other)] = fragment
        done = [fragment for fragment in found if fragment is not None]
        assert len(done) == len(keys), "every entry not kept was written"
        for key, fragment in zip(keys, done, strict=True):
            self._kept[key] = fragment  # (again) the most recently used
        while len(self._kept) > self.limit:
            del self._kept[next(iter(self._kept))]  # the least recently used
        return done

    def _write(self, entries: Sequence[tuple[Record, datetime]]) -> dict[str, list[bytes]]:
        """The entries in each format, from one set of feedgen entries (building them is half the cost)."""
        if self._writer is None:
            self._writer = _generator(_FRAGMENT_FEED, _FRAGMENT_SITE, "atom", EMPTY_FEED_DATE, "", None)
        fg = self._writer
        fg.entry([], replace=True)
        for record, when in entries:
            _entry(fg.add_entry(order="append"), record, when)
        docs = {fmt: _serialize(fg, fmt) for fmt in MEDIA_TYPES}
        fg.entry([], replace=True)
        return {fmt: _split_entries(doc, fmt) for fmt, doc in docs.items()}


def _split_entries(doc: bytes, fmt: str) -> list[bytes]:
    """The serialized entries of a document feedgen wrote (see `Fragments`)."""
    # Text and attribute values are escaped, so an entry's start tag at the
    # start of a line appears nowhere else: splitting there gives the entries
    # (bytes.split, not a regular expression: a zero-width pattern tries
    # every position of the document, a quarter of the time an entry takes).
    start = _ENTRY_START[fmt]
    parts = doc[doc.index(start) + len(start) : -len(_ENTRIES_END[fmt])].split(start)
    tag = start[1:]
    return [tag + part + b"\n" for part in parts[:-1]] + [tag + parts[-1]]


_FRAGMENTS = Fragments()
keep_fragments = _FRAGMENTS.keep


def _history(fg: FeedGenerator, *, archive: bool, links: tuple[tuple[str, str, str], ...]) -> None:
    fg.register_extension("history", HistoryExtension, None)
    fg.history.archive = archive
    fg.history.links = links


def _generator(
    feed: Feed | ArchivePage,
    site: Site,
    fmt: str,
    updated: datetime,
    query: str,
    title: str | None,
    self_url: str | None = None,
) -> FeedGenerator:
    """The feed-level metadata; `self_url` is given for an archive page (it names no hub)."""
    fg = FeedGenerator()
    fg.register_extension("media", MediaExtension, MediaEntryExtension)
    fg.register_extension("dc", DcExtension, DcEntryExtension, atom=False, rss=True)
    fg.register_extension("links", BaseExtension, LinksEntryExtension, atom=True, rss=False)
    if site.hubs and self_url is None:
        fg.register_extension("websub", HubsExtension, None)
        fg.websub.hubs = site.hubs
    self_url = self_url or site.feed_url(feed, fmt, query)
    fg.id(site.url(feed.key.path) + (f"?{query}" if query else ""))
    fg.title(plain(title or feed_title(site, feed)))
    fg.subtitle(plain(site.description))  # RSS <description> as well
    fg.language(site.language)
    fg.generator("feedsvc", version=__version__)
    # Atom wants an author for a feed without entries; entries name their own.
    fg.author(name=plain(site.title), uri=site.base_url)
    fg.link(href=self_url, rel="self", type=MEDIA_TYPES[fmt])
    fg.link(href=site.url(f"{feed.key.path}.html"), rel="alternate", type="text/html")
    fg.updated(updated)
    fg.ttl(site.ttl_minutes)
    return fg


def _entry(fe: FeedEntry, r: Record, updated: datetime) -> None:
    fe.id(r.id)
    fe.title(plain(r.title))
    fe.link(href=safe_url(r.link), rel="alternate")
    fe.published(r.published)
    fe.updated(updated)
    excerpt = plain(r.excerpt)
    if excerpt:
        fe.summary(excerpt, type="text")
        # RSS readers treat <description> as HTML: escape the plain text once.
        fe.description(html.escape(excerpt, quote=False))
    fe.content(content_html(r), type="html")
    fe.author(name=plain(r.provider.name), uri=safe_url(f"https://{r.provider.domain}/"))
    fe.dc.dc_creator(plain(r.provider.name))
    for name in r.topics:
        fe.category(term=topic_slug(name), label=plain(name))
    for image in r.images:
        fe.media.content(
            url=safe_url(image.url), medium="image", group=None, **size_attributes(image.width, image.height)
        )
    if r.images:
        lead = r.images[0]
        fe.media.thumbnail(url=safe_url(lead.url), group=None, **size_attributes(lead.width, lead.height))
    fe.links.record = r


class HubsExtension(BaseExtension):
    """The feed's WebSub hubs as ``<link rel="hub">`` (Atom) and ``<atom:link rel="hub">`` (RSS).

    feedgen writes only the self link of its Atom links into RSS (and uses
    the last link it was given as the RSS ``<link>``), so hubs are added here.
    feedgen runs feed extensions before it adds entries and items, so these
    links come before them, where the feed validator wants feed metadata.
    """

    def __init__(self) -> None:
        self.hubs: tuple[str, ...] = ()

    def extend_atom(self, feed):  # type: ignore[no-untyped-def]
        for hub in self.hubs:
            xml_elem("link", feed, rel="hub", href=safe_url(hub))
        return feed

    def extend_rss(self, rss):  # type: ignore[no-untyped-def]
        channel = rss.find("channel")
        for hub in self.hubs:
            xml_elem(f"{{{ATOM_NS}}}link", channel, rel="hub", href=safe_url(hub))
        return rss


class HistoryExtension(BaseExtension):
    """RFC 5005 feed history: ``<fh:archive/>`` and the current, prev-archive and next-archive links.

    As for hubs: feedgen writes only the self link into RSS, and RFC 5005
    Appendix B puts these links into the RSS channel as atom:link, so both
    formats get them here, before the entries.
    """

    def __init__(self) -> None:
        self.archive = False
        #: (rel, href, media type) of each link.
        self.links: tuple[tuple[str, str, str], ...] = ()

    def extend_ns(self):  # type: ignore[no-untyped-def]
        return {"fh": FH_NS} if self.archive else {}

    def extend_atom(self, feed):  # type: ignore[no-untyped-def]
        self._add(feed, "link")
        return feed

    def extend_rss(self, rss):  # type: ignore[no-untyped-def]
        self._add(rss.find("channel"), f"{{{ATOM_NS}}}link")
        return rss

    def _add(self, parent, link_tag: str) -> None:  # type: ignore[no-untyped-def]
        for rel, href, media_type in self.links:
            xml_elem(link_tag, parent, rel=rel, href=safe_url(href), type=media_type)
        if self.archive:
            xml_elem(f"{{{FH_NS}}}archive", parent)


class LinksEntryExtension(BaseEntryExtension):
    """Atom entry links with rel, type and title.

    feedgen 1.0.0 drops rel, type and title from entry-level Atom links
    (python-feedgen issue #135), so the enclosure and related links are written
    here, through feedgen's extension hook, instead of `FeedEntry.link`.
    """

    def __init__(self) -> None:
        self.record: Record | None = None

    def extend_atom(self, entry):  # type: ignore[no-untyped-def]
        # feedgen builds Atom elements without a namespace and declares the
        # default one on the root, so ours must match it.
        r = self.record
        if r is None:
            return entry
        if r.images:
            lead = r.images[0]
            attrs = {"rel": "enclosure", "href": safe_url(lead.url)}
            media_type = image_media_type(lead.url)
            if media_type:
                attrs["type"] = media_type
            xml_elem("link", entry, **attrs)
        for rel in r.related:
            xml_elem("link", entry, rel="related", href=safe_url(rel.url), title=plain(rel.title))
        return entry
