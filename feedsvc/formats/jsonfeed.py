"""Feeds as bytes: JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/).

The third format beside RSS and Atom, written from the same `Feed` with the
same helpers, so an entry has the same id, dates, title, author, tags and HTML
content in all three. Like `render.py`, this module decides how each field is
written, never what is in a feed.

=============  ====================================================
record         JSON Feed item
=============  ====================================================
id             ``id`` (the ``urn:uuid:`` of Atom and RSS)
link           ``url``
title          ``title`` (plain text, as in RSS and Atom)
published      ``date_published`` (RFC 3339, as Atom writes it)
updated        ``date_modified`` (the Atom ``updated`` value, made unique)
excerpt        ``summary``
content        ``content_html`` (the Atom ``<content type="html">``)
provider       ``authors``: ``[{"name", "url": "https://<domain>/"}]``
topics         ``tags`` (topic names)
lead image     ``image``; also ``banner_image`` when known to be landscape
images         ``attachments`` (those whose media type the URL names)
related        ``_feedsvc.related``: ``[{"title", "url", "provider"}]``
=============  ====================================================

JSON Feed has no place for related links, so they go in a ``_feedsvc``
extension object (the spec's rule for custom members: a leading ``_``, then a
letter). Keys come in the order the spec lists them, ``version`` first; the
bytes depend only on the feed, never on the clock or on dict or set order.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from feedsvc.formats.common import Site, content_html, entry_updated_times, feed_title, plain, safe_url
from feedsvc.model import Feed, Image, Record
from feedsvc.text import image_media_type

VERSION = "https://jsonfeed.org/version/1.1"
MEDIA_TYPE = "application/feed+json"
#: The ``type`` of a WebSub hub in ``hubs``.
HUB_TYPE = "WebSub"
#: The extension object's name.
EXTENSION = "_feedsvc"


def render_json(feed: Feed, site: Site, *, query: str = "", title: str | None = None) -> bytes:
    """`feed` as a JSON Feed 1.1 document: UTF-8 bytes ending in a newline.

    `query` and `title` make a custom feed, as for `render.render_feed`.
    """
    doc: dict[str, Any] = {
        "version": VERSION,
        "title": plain(title or feed_title(site, feed)),
        "home_page_url": site.url(f"{feed.key.path}.html"),
        "feed_url": site.feed_url(feed, "json", query),
        "description": plain(site.description),
        "authors": [{"name": plain(site.title), "url": site.base_url}],
        "language": site.language,
    }
    if site.hubs:
        doc["hubs"] = [{"type": HUB_TYPE, "url": safe_url(hub)} for hub in site.hubs]
    updated = entry_updated_times(feed.entries)
    doc["items"] = [_item(r, when) for r, when in zip(feed.entries, updated, strict=True)]
    text = json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _item(r: Record, updated: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": r.id,
        "url": safe_url(r.link),
        "title": plain(r.title),
        "content_html": content_html(r),
    }
    excerpt = plain(r.excerpt)
    if excerpt:
        item["summary"] = excerpt
    if r.images:
        lead = r.images[0]
        item["image"] = safe_url(lead.url)
        if _landscape(lead):
            item["banner_image"] = safe_url(lead.url)
    item["date_published"] = _date(r.published)
    item["date_modified"] = _date(updated)
    item["authors"] = [{"name": plain(r.provider.name), "url": safe_url(f"https://{r.provider.domain}/")}]
    if r.topics:
        item["tags"] = [plain(name) for name in r.topics]
    attachments = [_attachment(image) for image in r.images if image_media_type(image.url)]
    if attachments:
        item["attachments"] = attachments
    if r.related:
        related = []
        for rel in r.related:
            entry = {"title": plain(rel.title), "url": safe_url(rel.url)}
            if rel.provider_name:
                entry["provider"] = plain(rel.provider_name)
            related.append(entry)
        item[EXTENSION] = {"related": related}
    return item


def _attachment(image: Image) -> dict[str, Any]:
    return {"url": safe_url(image.url), "mime_type": image_media_type(image.url)}


def _landscape(image: Image) -> bool:
    """A banner is wide: only an image known to be wider than tall is offered as one."""
    return bool(image.width and image.height and image.width > image.height)


def _date(when: datetime) -> str:
    # The same text Atom's <published>/<updated> carry (feedgen writes isoformat()).
    return when.isoformat()
