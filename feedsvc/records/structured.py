"""The rules for fields made of parts: the provider mapping and the topic, image and related lists.

A list keeps the items it can use, up to its limit (`limits.max_*`), and
warns about the rest; reading stops after a bounded number of items, so a
hostile list of 100,000 items costs no more than a short one. A malformed
provider falls back to the link's host: every record has a provider feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from feedsvc.model import Image, Provider, Related
from feedsvc.records.problems import Problems, kind_of_value
from feedsvc.records.scalars import as_text, clean, display_name
from feedsvc.text import MAX_URL_CHARS, http_url, provider_key, topic_slug

if TYPE_CHECKING:  # the settings are defined beside the record assembly, which calls these rules
    from feedsvc.records.fields import Settings

#: At most this many problems are reported per list field; the rest are counted.
MAX_ITEM_WARNINGS = 5

T = TypeVar("T")
#: What an item maker returns for an item that repeats one already kept.
_REPEAT: Any = object()


def provider_field(f: Problems, values: dict[Any, Any], link: str, s: Settings) -> Provider:
    raw = values.get("provider")
    name: str | None = None
    domain: str | None = None
    if isinstance(raw, dict):
        if raw.get("name") is not None:
            name = display_name(raw.get("name"), s) or None
            if not name:
                f.warn("provider.name", "not usable text; using the domain")
        if raw.get("domain") is not None:
            text = raw.get("domain")
            domain = provider_key(text) if isinstance(text, str) and len(text) <= MAX_URL_CHARS else None
            if domain is None:
                f.warn("provider.domain", "not a domain name; using the link's host")
    elif raw is not None:
        f.warn("provider", f"must be a mapping with name and domain, not {kind_of_value(raw)}")
    if domain is None:
        domain = provider_key(link) or "unknown"
    return Provider(name=name or domain, domain=domain)


def _items(f: Problems, name: str, raw: list[Any], cap: int, make: Callable[[Any], T | None], skipped: str) -> list[T]:
    """Up to `cap` items that `make` accepts, reading a bounded number of items.

    Items `make` refuses (None) are skipped with a warning (the first few
    named, the rest counted), repeats (`_REPEAT`) silently; past `cap`, or
    after reading a few times `cap` items, the rest are dropped with one
    warning, so a list of 100,000 items costs no more than a short one.
    """
    kept: list[T] = []
    refused: list[int] = []
    examined = 0
    budget = cap * 4 + 100
    for i, item in enumerate(raw):
        if len(kept) >= cap or examined >= budget:
            break
        examined += 1
        made = make(item)
        if made is None:
            refused.append(i)
        elif made is not _REPEAT:
            kept.append(made)
    for i in refused[:MAX_ITEM_WARNINGS]:
        f.warn(f"{name}[{i}]", skipped)
    if len(refused) > MAX_ITEM_WARNINGS:
        f.warn(name, f"{len(refused) - MAX_ITEM_WARNINGS} more items skipped for the same reason")
    if examined < len(raw):
        f.warn(name, f"{len(raw)} given; kept {len(kept)} (limits.max_{name} is {cap})")
    return kept


def _list(f: Problems, values: dict[Any, Any], name: str, what: str) -> list[Any] | None:
    raw = values.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        f.warn(name, f"must be a list of {what}, not {kind_of_value(raw)}")
        return None
    return raw


def topics_field(f: Problems, values: dict[Any, Any], s: Settings) -> tuple[str, ...]:
    raw = values.get("topics")
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        items: list[Any] | None = [raw]  # lenient: one topic written without a list
    else:
        items = _list(f, values, "topics", "names")
    if items is None:
        return ()
    seen: set[str] = set()

    def make(item: Any) -> str | None:
        name = display_name(item, s)
        if not name:
            return None
        slug = topic_slug(name)
        if slug in seen:
            return _REPEAT  # the same topic spelt again ("AI", "ai")
        seen.add(slug)
        return name

    return tuple(_items(f, "topics", items, s.max_topics, make, "not a usable topic name; skipped"))


def images_field(f: Problems, values: dict[Any, Any], s: Settings) -> tuple[Image, ...]:
    items = _list(f, values, "images", "images")
    if items is None:
        return ()
    return tuple(_items(f, "images", items, s.max_images, _image, "no absolute http(s) url; skipped"))


def _image(item: Any) -> Image | None:
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        return None
    url = http_url(item["url"])
    if url is None:
        return None
    return Image(url, _dimension(item.get("width")), _dimension(item.get("height")))


def _dimension(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 100_000:
        return None
    return int(value)


def related_field(f: Problems, values: dict[Any, Any], s: Settings) -> tuple[Related, ...]:
    items = _list(f, values, "related", "articles")
    if items is None:
        return ()

    def make(item: Any) -> Related | None:
        return _related_item(item, s)

    reason = "needs a title and an absolute http(s) webUrl; skipped"
    return tuple(_items(f, "related", items, s.max_related, make, reason))


def _related_item(item: Any, s: Settings) -> Related | None:
    if not isinstance(item, dict):
        return None
    raw_url = item.get("webUrl") or item.get("originalUrl")
    url = http_url(raw_url) if isinstance(raw_url, str) else None
    if url is None:
        return None
    text = as_text(item.get("title"))
    title = clean(text, s, s.max_title_chars)[0] if text is not None else ""
    if not title:
        return None
    provider = item.get("provider")
    name = display_name(provider.get("name"), s) if isinstance(provider, dict) else ""
    return Related(title=title, url=url, provider_name=name or None)
