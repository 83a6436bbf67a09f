"""What every format writes the same way: the site's names and URLs, feed titles,
plain text and URLs made safe to publish, an entry's HTML body and its updated time.

RSS and Atom (`rss_atom`), JSON Feed (`jsonfeed`) and the HTML pages (`html`)
all take these from here, so a title or a URL reads the same in each.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.entities import html5, name2codepoint
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from feedsvc.config import Config, base_url
from feedsvc.model import ArchivePage, Feed, FeedKey, FeedKind, FeedSummary, Record
from feedsvc.text import encode_url_part, publishable

#: Where a plain-text field reads as markup to a reader that treats it as HTML
#: (and to the feed validator): a tag opener, or "&" starting an entity name.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_AMP_WORD = re.compile(r"&(#?\w+)(;?)")
#: U+2060 WORD JOINER: invisible, and it keeps "<b" or "&copy" from being
#: read as a tag or an entity, so the text displays exactly as written.
_JOINER = "\u2060"
#: A URL `safe_url` would leave as it is: ASCII, only characters that need no
#: escaping (per `text.URL_SAFE`), every "%" starting an escape.
_NORMAL_URL = re.compile(r"(?:[A-Za-z0-9\-._~!#$&'()*+,/:;=?@]|%[0-9A-Fa-f]{2})*")


@dataclass(frozen=True, slots=True)
class Site:
    """What the renderers need from `Config`: names and absolute URLs."""

    title: str
    description: str
    language: str
    base_url: str
    ttl_minutes: int
    #: WebSub hubs every feed names (rel="hub"); empty when WebSub is off.
    hubs: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> Site:
        return cls(
            title=config.site.title,
            description=config.site.description,
            language=config.site.language,
            base_url=base_url(config),
            ttl_minutes=max(1, config.server.cache_max_age // 60),
            hubs=config.websub.hubs,
        )

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def feed_url(self, feed: Feed | FeedSummary | ArchivePage, fmt: str, query: str = "") -> str:
        """The absolute URL of `feed` in `fmt`: its self link; `query` is canonical, without "?"."""
        return self.url(f"{feed.key.path}.{fmt}") + (f"?{query}" if query else "")


class Named(Protocol):
    """Anything with a feed's key and name: a `Feed`, a `FeedSummary`, an `ArchivePage`."""

    @property
    def key(self) -> FeedKey: ...
    @property
    def name(self) -> str: ...


def feed_title(site: Site, feed: Named) -> str:
    """The site title for the all-articles feed, else "<site title>: <name>"."""
    return titled(site, None if feed.key.kind is FeedKind.ALL else feed.name)


def titled(site: Site, name: str | None) -> str:
    """The title of a feed called `name` on `site` (custom feeds name theirs in words); the
    site's own title for the all-articles feed (`name` None)."""
    return site.title if name is None else f"{site.title}: {name}"


def entry_updated_times(entries: Sequence[Record]) -> list[datetime]:
    """The `updated` time written for each entry: the record's, made unique in the feed.

    The feed validator warns when two Atom entries share an ``updated`` value,
    which happens whenever two articles carry the same minute-precision
    timestamp. Entries that share a time get a sub-second offset derived from
    their id (so the same on every build and in every feed where they still
    collide); a remaining clash moves on by a microsecond. An entry whose time
    is unique in the feed keeps it exactly.
    """
    counts = Counter(r.updated for r in entries)
    taken: set[datetime] = set(t for t, n in counts.items() if n == 1)
    result: list[datetime] = []
    for r in entries:
        when = r.updated
        if counts[when] > 1:
            offset = int.from_bytes(hashlib.sha256(r.id.encode("utf-8")).digest()[:4], "big") % 1_000_000
            when = when + timedelta(microseconds=offset)
            while when in taken:
                when += timedelta(microseconds=1)
            taken.add(when)
        result.append(when)
    return result


def plain(text: str) -> str:
    """`text` made safe for a plain-text feed field, looking the same.

    Drops characters a feed must not carry, and puts an invisible word joiner
    after a "<" that would open a tag and after an "&" that would start a
    character reference, which is where the feed validator (and a reader that
    renders titles as HTML) would see markup. Text from `text.plain_text` rarely
    has either; this is the last line of defence, not the cleaning.
    """
    text = publishable(text)
    if "<" in text:
        text = _TAG_OPEN.sub("<" + _JOINER, text)
    if "&" in text:
        text = _AMP_WORD.sub(_break_reference, text)
    return text


def _break_reference(m: re.Match[str]) -> str:
    name, semicolon = m.group(1), m.group(2)
    if name in name2codepoint or name == "apos" or not name.isalpha() or (semicolon and f"{name};" in html5):
        return "&" + _JOINER + m.group(0)[1:]
    return m.group(0)


@functools.lru_cache(maxsize=65_536)
def safe_url(url: str) -> str:
    """`url` with anything a URI may not hold outside its host percent-encoded.

    Record URLs arrive normalised by `text.http_url`; this only guarantees the
    result, e.g. for "[" and "]" in a path, which RFC 3986 reserves for IPv6
    hosts and the feed validator rejects. Kept: an entry gives its image URL
    four times in each format, and every format and page asks again.
    """
    if (
        url.startswith(("http://", "https://"))
        and url[-1:] not in ("?", "#")
        and "?#" not in url
        and _NORMAL_URL.fullmatch(url)
    ):
        return url  # nothing to encode or drop (every URL `text.http_url` wrote)
    parts = urlsplit(url)
    path, query, fragment = (encode_url_part(part) for part in (parts.path, parts.query, parts.fragment))
    return urlunsplit((parts.scheme, parts.netloc, path, query, fragment))


def size_attributes(width: int | None, height: int | None) -> dict[str, str]:
    size = {}
    if width:
        size["width"] = str(width)
    if height:
        size["height"] = str(height)
    return size


@functools.lru_cache(maxsize=8_192)
def content_html(r: Record) -> str:
    """The entry's HTML body: excerpt, lead image, related coverage; all text escaped."""

    def esc(text: str) -> str:
        return html.escape(publishable(text))

    parts = []
    if r.excerpt:
        parts.append(f"<p>{esc(r.excerpt)}</p>")
    if r.images:
        lead = r.images[0]
        size = "".join(f' {k}="{v}"' for k, v in size_attributes(lead.width, lead.height).items())
        parts.append(f'<p><img src="{esc(safe_url(lead.url))}" alt=""{size}></p>')
    if r.related:
        items = []
        for rel in r.related:
            by = f" ({esc(rel.provider_name)})" if rel.provider_name else ""
            items.append(f'<li><a href="{esc(safe_url(rel.url))}">{esc(rel.title)}</a>{by}</li>')
        parts.append("<h3>Related coverage</h3><ul>" + "".join(items) + "</ul>")
    parts.append(f'<p><a href="{esc(safe_url(r.link))}">Read the article at {esc(r.provider.name)}</a></p>')
    return "\n".join(parts)
