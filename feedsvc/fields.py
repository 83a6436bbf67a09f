"""The field rules: a front-matter mapping → a checked, normalised `Record`.

A record is usable when it has a title, a link (webUrl, else originalUrl; only
http and https) and a parseable publishedDateTime. Everything else is optional:
an optional field of the wrong type is dropped with a warning, a required one
rejects the record. See docs/design.md ("Input rules") for each decision.
"""

from __future__ import annotations

import email.utils
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

from .errors import RecordError
from .model import Image, Provider, Record, Related
from .text import canonical_url, http_url, plain_text, provider_key, topic_slug

#: Dates outside [EARLIEST, LATEST) are rejected: before 1990 there was no
#: web to publish on (the W3C feed validator calls such dates implausible), and
#: after 2100 is a typo, not a schedule. Fixed bounds, so what is published
#: never depends on the clock.
EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Settings:
    """The part of `Config` that decides how a record is read."""

    repair_mojibake: bool = True
    max_title_chars: int = 300
    max_excerpt_chars: int = 2_000
    max_topics: int = 20
    max_images: int = 10
    max_related: int = 20
    max_file_bytes: int = 1_048_576


class _Fields:
    """Collects problems for one record, with line numbers from the front matter."""

    def __init__(self, rel: str, text: str, problems: list[RecordError]) -> None:
        self.rel, self.text, self.problems = rel, text, problems
        self.rejected = False

    def line(self, field: str) -> int | None:
        top = field.split(".")[0].split("[")[0]
        m = re.search(rf"^{re.escape(top)}\s*:", self.text, re.MULTILINE)
        # The front matter starts on the file's second line.
        return self.text.count("\n", 0, m.start()) + 1 if m else None

    def error(self, field: str, reason: str) -> None:
        self.rejected = True
        self.problems.append(RecordError(self.rel, field, reason, self.line(field)))

    def warn(self, field: str, reason: str) -> None:
        self.problems.append(RecordError(self.rel, field, reason, self.line(field), "warning"))


def record_from_mapping(
    rel: str, values: dict[Any, Any], text: str, settings: Settings, problems: list[RecordError]
) -> Record | None:
    """Build a `Record` from front matter, or None (with errors) if it is unusable."""
    f = _Fields(rel, text, problems)
    title = _text(f, values, "title", settings, settings.max_title_chars, required=True)
    link, canonical = _links(f, values)
    published = _date(f, values, "publishedDateTime", required=True)
    updated = _date(f, values, "updatedDateTime", required=False)
    _check_secured(f, values, text)
    if f.rejected or title is None or link is None or canonical is None or published is None:
        return None
    if updated is None or updated < published:
        if updated is not None:
            f.warn("updatedDateTime", "earlier than publishedDateTime; using publishedDateTime")
        updated = published
    return Record(
        path=rel,
        id=entry_id(canonical),
        canonical_url=canonical,
        title=title,
        link=link,
        published=published,
        updated=updated,
        excerpt=_text(f, values, "excerpt", settings, settings.max_excerpt_chars) or "",
        provider=_provider(f, values, link, settings),
        topics=_topics(f, values, settings),
        images=_images(f, values, settings),
        related=_related(f, values, settings),
        category=_text(f, values, "category", settings, 100),
        type=_text(f, values, "type", settings, 100),
        quality=_quality(f, values),
        heat=_heat(f, values),
        is_published=_published(f, values),
    )


def entry_id(canonical: str) -> str:
    """The entry id: a UUID5 of the canonical URL, the same on every machine."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, canonical))


def _text(
    f: _Fields, values: dict[Any, Any], name: str, s: Settings, limit: int, required: bool = False
) -> str | None:
    value = values.get(name)
    if value is None:
        if required:
            f.error(name, "missing" if name not in values else "empty")
        return None
    text = _as_text(value)
    if text is None:
        (f.error if required else f.warn)(name, f"must be text, not {_kind(value)}")
        return None
    cleaned = plain_text(text, repair=s.repair_mojibake)
    if not cleaned:
        if required:
            f.error(name, "empty")
        return None
    if len(cleaned) > limit:
        f.warn(name, f"longer than {limit} characters; cut to fit")
        cleaned = plain_text(cleaned, repair=False, max_chars=limit)
    return cleaned


def _as_text(value: Any) -> str | None:
    """Text, or a scalar YAML read as something else (a number, a date)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, date)):
        return value.isoformat() if isinstance(value, date) else str(value)
    return None


def _links(f: _Fields, values: dict[Any, Any]) -> tuple[str | None, str | None]:
    web = _url(f, values, "webUrl")
    original = _url(f, values, "originalUrl")
    if f.rejected:
        return None, None
    link = web or original
    if link is None:
        f.error("webUrl", "missing: a record needs webUrl or originalUrl")
        return None, None
    return link, canonical_url(original or link)


def _url(f: _Fields, values: dict[Any, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        f.error(name, f"must be a URL, not {_kind(value)}")
        return None
    url = http_url(value)
    if url is None:
        f.error(name, "not an absolute http or https URL")
    return url


def _date(f: _Fields, values: dict[Any, Any], name: str, required: bool) -> datetime | None:
    value = values.get(name)
    report: Callable[[str, str], None] = f.error if required else f.warn
    if value is None:
        if required:
            f.error(name, "missing")
        return None
    parsed = parse_date(value)
    if parsed is None:
        report(name, "not a date (use ISO 8601, e.g. 2023-12-21T17:35:00Z, or RFC 2822)")
        return None
    if not EARLIEST <= parsed < LATEST:
        report(name, f"implausible date (allowed: {EARLIEST.year} to {LATEST.year - 1})")
        return None
    return parsed


def parse_date(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from YAML's value; a zone-less time is UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time(0, 0))
    elif isinstance(value, str):
        dt = _parse_date_text(value.strip())
        if dt is None:
            return None
    else:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _parse_date_text(text: str) -> datetime | None:
    if not text or len(text) > 64:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _provider(f: _Fields, values: dict[Any, Any], link: str, s: Settings) -> Provider:
    raw = values.get("provider")
    name: str | None = None
    domain: str | None = None
    if isinstance(raw, dict):
        if raw.get("name") is not None:
            text = _as_text(raw.get("name"))
            name = plain_text(text, repair=s.repair_mojibake, max_chars=200) if text else None
            if not name:
                f.warn("provider.name", "not usable text; using the domain")
        if raw.get("domain") is not None:
            text = _as_text(raw.get("domain"))
            domain = provider_key(text) if text else None
            if domain is None:
                f.warn("provider.domain", "not a domain name; using the link's host")
    elif raw is not None:
        f.warn("provider", f"must be a mapping with name and domain, not {_kind(raw)}")
    if domain is None:
        domain = provider_key(link) or "unknown"
    return Provider(name=name or domain, domain=domain)


def _topics(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[str, ...]:
    raw = values.get("topics")
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        f.warn("topics", f"must be a list of names, not {_kind(raw)}")
        return ()
    names: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        text = _as_text(item)
        name = plain_text(text, repair=s.repair_mojibake, max_chars=100) if text is not None else ""
        if not name:
            f.warn(f"topics[{i}]", "not a usable topic name; skipped")
            continue
        slug = topic_slug(name)
        if slug not in seen:
            seen.add(slug)
            names.append(name)
    if len(names) > s.max_topics:
        f.warn("topics", f"{len(names)} topics; kept the first {s.max_topics} (limits.max_topics)")
        names = names[: s.max_topics]
    return tuple(names)


def _images(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[Image, ...]:
    raw = values.get("images")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        f.warn("images", f"must be a list, not {_kind(raw)}")
        return ()
    images: list[Image] = []
    for i, item in enumerate(raw):
        url = http_url(item.get("url")) if isinstance(item, dict) and isinstance(item.get("url"), str) else None
        if url is None:
            f.warn(f"images[{i}]", "no absolute http(s) url; skipped")
            continue
        images.append(Image(url, _dimension(item.get("width")), _dimension(item.get("height"))))
    if len(images) > s.max_images:
        f.warn("images", f"{len(images)} images; kept the first {s.max_images} (limits.max_images)")
        images = images[: s.max_images]
    return tuple(images)


def _dimension(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 100_000:
        return None
    return value


def _related(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[Related, ...]:
    raw = values.get("related")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        f.warn("related", f"must be a list, not {_kind(raw)}")
        return ()
    items: list[Related] = []
    for i, item in enumerate(raw):
        related = _related_item(item, s)
        if related is None:
            f.warn(f"related[{i}]", "needs a title and an absolute http(s) webUrl; skipped")
        else:
            items.append(related)
    if len(items) > s.max_related:
        f.warn("related", f"{len(items)} related items; kept the first {s.max_related} (limits.max_related)")
        items = items[: s.max_related]
    return tuple(items)


def _related_item(item: Any, s: Settings) -> Related | None:
    if not isinstance(item, dict):
        return None
    raw_url = item.get("webUrl") or item.get("originalUrl")
    url = http_url(raw_url) if isinstance(raw_url, str) else None
    text = _as_text(item.get("title"))
    title = plain_text(text, repair=s.repair_mojibake, max_chars=s.max_title_chars) if text else ""
    if url is None or not title:
        return None
    provider = item.get("provider")
    name = _as_text(provider.get("name")) if isinstance(provider, dict) else None
    name = plain_text(name, repair=s.repair_mojibake, max_chars=200) if name else None
    return Related(title=title, url=url, provider_name=name or None)


def _quality(f: _Fields, values: dict[Any, Any]) -> float:
    value = values.get("quality")
    if value is None:
        return 0.0
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        f.warn("quality", f"must be a number, not {_kind(value)}; using 0")
        return 0.0
    return float(value)


def _heat(f: _Fields, values: dict[Any, Any]) -> int | None:
    value = values.get("heat")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        f.warn("heat", f"must be a whole number, not {_kind(value)}; ignored")
        return None
    return value


def _published(f: _Fields, values: dict[Any, Any]) -> bool:
    value = values.get("published", True)
    if not isinstance(value, bool):
        # Unclear means unpublished: a record must never leak by accident.
        f.warn("published", f"must be true or false, not {_kind(value)}; treated as false")
        return False
    return value


def _check_secured(f: _Fields, values: dict[Any, Any], text: str) -> None:
    """Reject a record whose secured value, or a part of it, is copied into another field."""
    secured = values.get("secured")
    if not isinstance(secured, str) or not secured:
        return
    parts = [p for p in re.split(r"[;\s]+", secured) if len(p) >= 8] or [secured]
    for part in parts:
        if text.count(part) > 1:
            f.error("secured", "its value also appears in another field; refusing to publish it")
            return


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (date, datetime)):
        return "a date"
    return type(value).__name__
