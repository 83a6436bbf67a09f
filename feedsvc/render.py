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
from dataclasses import dataclass
from datetime import datetime, timezone

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.ext.dc import DcEntryExtension, DcExtension
from feedgen.ext.media import MediaEntryExtension, MediaExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from . import __version__
from .config import Config, base_url
from .model import Feed, FeedKind, Record
from .text import image_media_type, topic_slug

#: The date an empty feed claims: fixed, so an empty feed is deterministic too.
EMPTY_FEED_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)
FORMATS = {"rss": "application/rss+xml", "atom": "application/atom+xml"}


@dataclass(frozen=True, slots=True)
class Site:
    """What the renderers need from `Config`: names and absolute URLs."""

    title: str
    description: str
    language: str
    base_url: str
    ttl_minutes: int

    @classmethod
    def from_config(cls, config: Config) -> Site:
        return cls(
            title=config.site.title,
            description=config.site.description,
            language=config.site.language,
            base_url=base_url(config),
            ttl_minutes=max(1, config.server.cache_max_age // 60),
        )

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")


def feed_title(site: Site, feed: Feed) -> str:
    if feed.key.kind is FeedKind.ALL:
        return site.title
    return f"{site.title}: {feed.name}"


def render_feed(feed: Feed, site: Site, fmt: str) -> bytes:
    """The feed in `fmt` ("rss" or "atom") as UTF-8 XML bytes."""
    fg = _generator(feed, site, fmt)
    for record in feed.entries:
        _entry(fg.add_entry(order="append"), record, site)
    if fmt == "atom":
        return bytes(fg.atom_str(pretty=True))
    return bytes(fg.rss_str(pretty=True))


def _generator(feed: Feed, site: Site, fmt: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.register_extension("media", MediaExtension, MediaEntryExtension)
    fg.register_extension("dc", DcExtension, DcEntryExtension, atom=False, rss=True)
    fg.register_extension("links", BaseExtension, LinksEntryExtension, atom=True, rss=False)
    self_url = site.url(f"{feed.key.path}.{fmt}")
    fg.id(site.url(feed.key.path))
    fg.title(feed_title(site, feed))
    fg.subtitle(site.description)  # RSS <description> as well
    fg.language(site.language)
    fg.generator("feedsvc", version=__version__)
    fg.link(href=self_url, rel="self", type=FORMATS[fmt])
    fg.link(href=site.url(f"{feed.key.path}.html"), rel="alternate", type="text/html")
    fg.updated(feed.updated or EMPTY_FEED_DATE)
    fg.ttl(site.ttl_minutes)
    return fg


def _entry(fe: FeedEntry, r: Record, site: Site) -> None:
    fe.id(r.id)
    fe.title(r.title)
    fe.link(href=r.link, rel="alternate")
    fe.published(r.published)
    fe.updated(r.updated)
    if r.excerpt:
        fe.summary(r.excerpt, type="text")
        # RSS readers treat <description> as HTML: escape the plain text once.
        fe.description(html.escape(r.excerpt, quote=False))
    fe.content(content_html(r), type="html")
    fe.author(name=r.provider.name, uri=f"https://{r.provider.domain}/")
    fe.dc.dc_creator(r.provider.name)
    for name in r.topics:
        fe.category(term=topic_slug(name), label=name)
    for image in r.images:
        fe.media.content(url=image.url, medium="image", group=None, **_size(image.width, image.height))
    if r.images:
        lead = r.images[0]
        fe.media.thumbnail(url=lead.url, group=None, **_size(lead.width, lead.height))
    fe.links.record = r


def _size(width: int | None, height: int | None) -> dict[str, str]:
    size = {}
    if width:
        size["width"] = str(width)
    if height:
        size["height"] = str(height)
    return size


def content_html(r: Record) -> str:
    """The entry's HTML body: excerpt, lead image, related coverage; all text escaped."""
    esc = html.escape
    parts = []
    if r.excerpt:
        parts.append(f"<p>{esc(r.excerpt)}</p>")
    if r.images:
        lead = r.images[0]
        size = "".join(f' {k}="{v}"' for k, v in _size(lead.width, lead.height).items())
        parts.append(f'<p><img src="{esc(lead.url)}" alt=""{size}></p>')
    if r.related:
        items = []
        for rel in r.related:
            by = f" ({esc(rel.provider_name)})" if rel.provider_name else ""
            items.append(f'<li><a href="{esc(rel.url)}">{esc(rel.title)}</a>{by}</li>')
        parts.append("<h3>Related coverage</h3><ul>" + "".join(items) + "</ul>")
    parts.append(f'<p><a href="{esc(r.link)}">Read the article at {esc(r.provider.name)}</a></p>')
    return "\n".join(parts)


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
            attrs = {"rel": "enclosure", "href": lead.url}
            media_type = image_media_type(lead.url)
            if media_type:
                attrs["type"] = media_type
            xml_elem("link", entry, **attrs)
        for rel in r.related:
            xml_elem("link", entry, rel="related", href=rel.url, title=rel.title)
        return entry
