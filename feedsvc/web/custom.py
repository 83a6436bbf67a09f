"""Custom feeds: a feed narrowed by a query string, over the build cache's feeds.

``/feeds/all.atom?topic=ai&topic=robotics&min_quality=40&limit=10`` is the
all-articles feed narrowed to two topics, good articles only, ten entries. The
query runs over the build cache's feeds (`store.Store.entries`: the members,
duplicate election, filters and order of the files the build wrote), and the
result is rendered by the same renderers as every other feed, so it is valid
in the same ways. What each feed takes:

==========================  ============================================
feed                        parameters
==========================  ============================================
``/feeds/all.*``            ``topic`` (up to 10), ``min_quality``, ``limit``
``/feeds/topics/<slug>.*``  ``provider`` (a domain), ``min_quality``, ``limit``
``/feeds/providers/<d>.*``  ``min_quality``, ``limit``
==========================  ============================================

Parsing is strict, so a cache never fills with spellings of one query: an
unknown or repeated name, a value that is not a whole number or is out of
range, or an over-long value is a `QueryError` (a 400 in `web.py`). Equal
queries have one canonical form (names in alphabetical order, topics as sorted
slugs, the provider as its feed key, numbers without leading zeros): the
custom feed's self link and Atom id carry it, and results are cached under it,
so ``?topic=AI&topic=Robotics`` and ``?topic=robotics&topic=ai`` share one
cache entry and one set of bytes. A query in another order is answered, not
redirected: its self link names the canonical URL.

Custom feeds name no WebSub hub: hubs are only told about the feeds
`feedsvc build` writes (websub.py), so a subscription to a custom feed through
a hub would never be served; readers poll custom feeds instead.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

from feedsvc.build.served import Served, etag_of
from feedsvc.build.store import Store
from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.formats.common import Site, titled
from feedsvc.formats.compress import gzipped
from feedsvc.formats.registry import FeedFormat, feed_path
from feedsvc.model import Document, Feed, FeedKey, FeedKind, Record
from feedsvc.text import MAX_SLUG, provider_key, topic_slug

#: Most topics one custom feed may combine.
MAX_TOPICS = 10
#: Longest value of one parameter, in characters.
MAX_VALUE = 200
#: Most ``name=value`` pairs in one query string.
MAX_PARAMS = 24
#: The highest min_quality accepted (record qualities are 0 to 100 in practice).
MAX_QUALITY = 1000
#: Which parameters each kind of feed takes.
PARAMETERS = {
    FeedKind.ALL: ("limit", "min_quality", "topic"),
    FeedKind.TOPIC: ("limit", "min_quality", "provider"),
    FeedKind.PROVIDER: ("limit", "min_quality"),
}
#: A whole number; leading zeros are dropped ("0005" is 5), so they only ever cost length.
_NUMBER = re.compile(r"0*[0-9]{1,7}")
_SHOWN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class QueryError(FeedsvcError):
    """A query string that does not describe a custom feed; the message says why, briefly."""


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query in canonical form."""

    #: Topic slugs, sorted, without repeats.
    topics: tuple[str, ...] = ()
    #: A provider's feed key (its normalised domain).
    provider: str | None = None
    min_quality: int | None = None
    limit: int | None = None

    def canonical(self) -> str:
        """The query string (without "?") every spelling of this query maps to."""
        parts = []
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        if self.min_quality is not None:
            parts.append(f"min_quality={self.min_quality}")
        if self.provider is not None:
            parts.append(f"provider={self.provider}")
        parts += [f"topic={t}" for t in self.topics]
        return "&".join(parts)


def parse(kind: FeedKind, query_string: str, max_entries: int) -> Query:
    """The `Query` a feed of `kind` was asked with; `QueryError` when it is not one.

    `query_string` is as WSGI gives it (the raw bytes as Latin-1 text):
    %-escapes and raw bytes alike are read as UTF-8. Empty pieces
    (``?&limit=5&``) are ignored; a query string of nothing else is the plain
    feed.
    """
    allowed = PARAMETERS[kind]
    raw = _raw_bytes(query_string)
    pieces = [p for p in raw.split(b"&") if p]
    if len(pieces) > MAX_PARAMS:
        raise QueryError(f"too many parameters (at most {MAX_PARAMS})")
    values: dict[str, list[str]] = {}
    for piece in pieces:
        raw_name, eq, raw_value = piece.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8")
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise QueryError("the query string is not UTF-8") from None
        if name not in allowed:
            shown = f" '{name}'" if _SHOWN_NAME.fullmatch(name) else ""  # never echo markup or junk
            raise QueryError(f"unknown parameter{shown}; this feed takes {', '.join(allowed)}")
        if not eq or not value.strip():
            raise QueryError(f"{name} needs a value")
        if len(value) > MAX_VALUE:
            raise QueryError(f"{name} is too long (at most {MAX_VALUE} characters)")
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if name != "topic" and len(given) > 1:
            raise QueryError(f"{name} may be given only once")
    topics = values.get("topic", [])
    if len(topics) > MAX_TOPICS:
        raise QueryError(f"too many topics (at most {MAX_TOPICS})")
    provider = None
    if "provider" in values:
        provider = provider_key(values["provider"][0])
        if provider is None:
            raise QueryError("provider must be a domain name, such as example.com")
    return Query(
        topics=tuple(sorted({_slug(t) for t in topics})),
        provider=provider,
        min_quality=_number(values, "min_quality", 0, MAX_QUALITY),
        limit=_number(values, "limit", 1, max_entries),
    )


def _raw_bytes(query_string: str) -> bytes:
    try:
        return query_string.encode("latin-1")  # PEP 3333: bytes as Latin-1 text
    except UnicodeEncodeError:
        return query_string.encode("utf-8", "surrogateescape")  # a caller that decoded already


#: A topic slug as it appears in feed URLs: slugging it gives it back unchanged.
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _slug(name: str) -> str:
    """A queried topic's slug, as `feeds.topic_keys` makes it.

    Slugs (what self links carry) are taken as they are; other spellings are
    slugged through a cache of their own, so queries cannot crowd the records'
    topic names out of the shared one.
    """
    name = name.strip()
    if len(name) <= MAX_SLUG and _SLUG.fullmatch(name):
        return name
    return _slug_uncommon(name)


_slug_uncommon = functools.lru_cache(maxsize=1024)(getattr(topic_slug, "__wrapped__", topic_slug))


def _number(values: Mapping[str, list[str]], name: str, low: int, high: int) -> int | None:
    if name not in values:
        return None
    text = values[name][0]
    if not _NUMBER.fullmatch(text):
        raise QueryError(f"{name} must be a whole number from {low} to {high}")
    number = int(text)
    if not low <= number <= high:
        raise QueryError(f"{name} must be a whole number from {low} to {high}")
    return number


# -- running a query ---------------------------------------------------------------


def feed_of(path: str) -> tuple[FeedKey, FeedFormat] | None:
    """The feed and format a URL path names ("feeds/topics/ai.atom"), if a query applies to it.

    Archive pages take no query, as pages do.
    """
    named = feed_path(path)
    if named is None or named.page is not None or not named.format.queries:
        return None
    return named.key, named.format


def queried_kind(path: str) -> FeedKind | None:
    """The kind of feed `path` names if a query applies to it, else None."""
    feed = feed_of(path)
    return feed[0].kind if feed else None


def run(store: Store, key: FeedKey, query: Query, max_entries: int) -> Feed:
    """The custom feed: `key`'s records that match `query`, newest first, capped.

    The records come from the build cache's feeds (`Store.entries`), so a
    custom feed holds what the build's feeds hold, in their order.
    """
    limit = query.limit or max_entries
    if key.kind is FeedKind.ALL and query.topics:
        feeds = [FeedKey(FeedKind.TOPIC, t).text for t in query.topics]
    else:
        feeds = [key.text]
    within = FeedKey(FeedKind.PROVIDER, query.provider).text if query.provider is not None else None
    entries: list[Record] = []
    for r in store.entries(feeds, within):
        if query.min_quality is not None and r.quality < query.min_quality:
            continue
        entries.append(r)
        if len(entries) >= limit:
            break
    name = store.feed_name(key.text) or key.slug
    return Feed(key=key, name=name, entries=tuple(entries), total=len(entries))


def title(site: Site, store: Store, key: FeedKey, query: Query) -> str:
    """A custom feed's title: what it is narrowed to, in words."""

    def name(k: FeedKey) -> str:
        return store.feed_name(k.text) or k.slug

    if key.kind is FeedKind.ALL:
        topics = " + ".join(name(FeedKey(FeedKind.TOPIC, t)) for t in query.topics)
        text = titled(site, topics or None)
    else:
        text = titled(site, name(key))
    if query.provider is not None:
        text += f" from {name(FeedKey(FeedKind.PROVIDER, query.provider))}"
    if query.min_quality is not None:
        text += f" (quality {query.min_quality} and up)"
    return text


def render(store: Store, site: Site, key: FeedKey, fmt: FeedFormat, query: Query, max_entries: int) -> Document:
    """The custom feed as a `Document` at its path, ready to serve."""
    feed = run(store, key, query, max_entries)
    body = fmt.render(feed, site, query=query.canonical(), title=title(site, store, key, query))
    return Document(f"{key.path}.{fmt.suffix}", body, fmt.content_type, feed.updated)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A custom feed ready to send: its row (validators, media type) and both encodings."""

    row: Served
    plain: bytes
    gzip: bytes | None

    @property
    def size(self) -> int:
        return len(self.plain) + len(self.gzip or b"")


def prepare(doc: Document) -> Rendered:
    packed = gzipped(doc)
    row = Served.of(doc, etag_of(doc.body), len(doc.body), (etag_of(packed), len(packed)) if packed else None)
    return Rendered(row, doc.body, packed)


# -- the cache -----------------------------------------------------------------------

V = TypeVar("V")


@dataclass
class LRU(Generic[V]):
    """A least-recently-used map bounded in entries and in bytes; thread-safe."""

    max_entries: int
    max_bytes: int
    _items: OrderedDict[str, tuple[V, int]] = field(default_factory=OrderedDict)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: V, size: int) -> None:
        """Keep `value` unless it alone is over the byte budget; evict the least recent."""
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _key, (_value, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes


class CustomFeeds:
    """Custom feeds for one served site: parse, run over the build cache, render, cache.

    Results are cached under ``path?canonical query`` for one generation of
    the build and dropped when a newer one is served, so a custom feed never
    outlives the records it was made from.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        # No rel="hub": hubs are told when a feed file changes, never about a
        # custom feed, so a subscriber to one through a hub would wait forever.
        # Without a hub link a reader polls it (cheaply: ETags, 304s).
        self.site = dataclasses.replace(Site.from_config(config), hubs=())
        self.cache: LRU[Rendered] = LRU(config.queries.cache_entries, config.queries.cache_bytes)
        self._lock = threading.Lock()
        self._generation = 0

    def get(self, store: Store, generation: int, path: str, query: Query) -> tuple[Rendered, bool]:
        """The custom feed at `path` for `query`, and whether it came from the cache.

        `generation` names the build served (its publication time: it only
        grows, even across a cache rebuilt from scratch).
        """
        key = f"{path}?{query.canonical()}"
        current = self._current(generation)
        if current:
            found = self.cache.get(key)
            if found is not None:
                return found, True
        feed = feed_of(path)
        assert feed is not None, "only feed paths take a query"
        doc = render(store, self.site, feed[0], feed[1], query, self.config.max_entries)
        rendered = prepare(doc)
        if current:
            self.cache.put(key, rendered, rendered.size)
        return rendered, False

    def _current(self, generation: int) -> bool:
        """Whether `generation` is the newest seen (a newer one clears the cache)."""
        with self._lock:
            if generation > self._generation:
                self._generation = generation
                self.cache.clear()
            return generation == self._generation
