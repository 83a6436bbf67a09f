"""The field rules: a front-matter mapping → a checked, normalised `Record`.

A record is usable when it has a title, a link (webUrl, else originalUrl; only
http and https) and a parseable publishedDateTime. Everything else is optional:
an optional field of the wrong type is dropped with a warning, a required one
rejects the record. See docs/design.md ("Input rules") for each decision.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from feedsvc.config import Config, LimitsConfig
from feedsvc.errors import RecordError
from feedsvc.model import Image, Provider, Record, Related
from feedsvc.text import MAX_URL_CHARS, canonical_url, http_url, plain_text, provider_key, topic_slug

#: Dates outside [EARLIEST, LATEST) are rejected: before 1990 there was no
#: web to publish on (the W3C feed validator calls such dates implausible), and
#: after 2100 is a typo, not a schedule. Fixed bounds, so what is published
#: never depends on the clock.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: Longest topic name, provider name and category or type kept, in characters.
MAX_NAME_CHARS = 100
#: At most this many problems are reported per list field; the rest are counted.
MAX_ITEM_WARNINGS = 5
#: A secured piece this long is looked for in the published fields.
_MIN_SECRET_PIECE = 8
_SLICE = 24

T = TypeVar("T")
#: What an item maker returns for an item that repeats one already kept.
_REPEAT: Any = object()


@dataclass(frozen=True, slots=True)
class Settings(LimitsConfig):
    """The part of `Config` that decides how a record is read: the limits
    (`config.LimitsConfig`, where their defaults live) and the mojibake repair."""

    repair_mojibake: bool = True

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(**dataclasses.asdict(config.limits), repair_mojibake=config.repair_mojibake)


class _Fields:
    """Collects problems for one record, with line numbers from the front matter."""

    def __init__(self, rel: str, text: str, problems: list[RecordError]) -> None:
        self.rel, self.text, self.problems = rel, text, problems
        self.rejected = False
        self._lines: dict[str, int | None] = {}

    def line(self, field: str) -> int | None:
        """The file line of the field's top-level key (the text starts at line 1)."""
        top = field.split(".")[0].split("[")[0]
        if top not in self._lines:
            m = re.search(rf"^{re.escape(top)}[ \t]*:", self.text, re.MULTILINE)
            self._lines[top] = self.text.count("\n", 0, m.start()) + 1 if m else None
        return self._lines[top]

    def source(self, field: str, value: int | float) -> str:
        """How a top-level number was written ("3.10", "007"), else its value as text.

        YAML reads an unquoted title like 3.10 as a number; the file still
        says what was meant. Only read for the rare text field that YAML read
        as a number, so ordinary records pay nothing for it.
        """
        m = re.search(rf"^{re.escape(field)}[ \t]*:[ \t]*([^\s#'\"][^#\n]*?)[ \t]*(?:#.*)?$", self.text, re.MULTILINE)
        if m and _same_number(m.group(1), value):
            return m.group(1)
        return str(value)

    def error(self, field: str, reason: str) -> None:
        self.rejected = True
        self.problems.append(RecordError(self.rel, field, reason, self.line(field)))

    def warn(self, field: str, reason: str) -> None:
        self.problems.append(RecordError(self.rel, field, reason, self.line(field), "warning"))


def record_from_mapping(
    rel: str, values: dict[Any, Any], text: str, settings: Settings, problems: list[RecordError]
) -> Record | None:
    """Build a `Record` from front matter, or None (with errors) if it is unusable.

    `text` is the front matter as it stands in the file, for line numbers.
    """
    f = _Fields(rel, text, problems)
    title = _text(f, values, "title", settings, settings.max_title_chars, required=True)
    link, canonical = _links(f, values)
    published = _date(f, values, "publishedDateTime", required=True)
    updated = _date(f, values, "updatedDateTime", required=False)
    if f.rejected or title is None or link is None or canonical is None or published is None:
        return None
    if updated is None or updated < published:
        if updated is not None:
            f.warn("updatedDateTime", "earlier than publishedDateTime; using publishedDateTime")
        updated = published
    record = Record(
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
        category=_text(f, values, "category", settings, MAX_NAME_CHARS),
        type=_text(f, values, "type", settings, MAX_NAME_CHARS),
        quality=_quality(f, values),
        heat=_heat(f, values),
        is_published=_published(f, values),
    )
    if _leaks_secured(f, values.get("secured"), record):
        return None
    return record


def entry_id(canonical: str) -> str:
    """The entry id: a UUID5 of the canonical URL, the same on every machine.

    Spelled out (what `uuid.uuid5` does: SHA-1, version and variant bits)
    to skip building a `UUID` object per record.
    """
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + canonical.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def _text(f: _Fields, values: dict[Any, Any], name: str, s: Settings, limit: int, required: bool = False) -> str | None:
    value = values.get(name)
    if value is None:
        if required:
            f.error(name, "missing" if name not in values else "empty")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text: str | None = f.source(name, value)
    else:
        text = _as_text(value)
    if text is None:
        hint = " (put it in quotes)" if isinstance(value, bool) else ""
        (f.error if required else f.warn)(name, f"must be text, not {kind_of_value(value)}{hint}")
        return None
    cleaned, cut = _clean(text, s, limit)
    if not cleaned:
        if required:
            f.error(name, "empty")
        return None
    if cut:
        f.warn(name, f"longer than {limit:,} characters; cut to fit")
    return cleaned


def _clean(text: str, s: Settings, limit: int) -> tuple[str, bool]:
    """Plain text of at most `limit` characters, and whether it had to be cut.

    A value far over the limit is cut before cleaning, so a megabyte of text
    costs no more than what is kept of it.
    """
    bound = limit * 8 + 1_000
    cut = len(text) > bound
    cleaned = plain_text(text[:bound] if cut else text, repair=s.repair_mojibake)
    if len(cleaned) > limit:
        return plain_text(cleaned, repair=False, max_chars=limit), True
    return cleaned, cut


def _name(value: Any, s: Settings) -> str:
    """A short display name (topic, provider), or "" when there is none."""
    text = _as_text(value)
    return _clean(text, s, MAX_NAME_CHARS)[0] if text is not None else ""


def _as_text(value: Any) -> str | None:
    """Text, or a scalar YAML read as something else (a number, a date)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, date)):
        return value.isoformat() if isinstance(value, date) else str(value)
    return None


def _same_number(text: str, value: int | float) -> bool:
    """Whether `text` is a spelling of `value` (YAML 1.1 reads "007" as 7, "3.10" as 3.1)."""
    if len(text) > 64:
        return False
    if ":" in text or text.lower().lstrip("+-") in (".inf", ".nan"):
        return True  # base 60 ("12:30" is 750), or infinity
    cleaned = text.replace("_", "")
    readings = (
        (lambda: int(cleaned, 0), lambda: int(cleaned, 8), lambda: int(cleaned))
        if isinstance(value, int)
        else (lambda: float(cleaned),)
    )
    for read in readings:
        try:
            if read() == value:
                return True
        except ValueError:
            continue
    return False


def _links(f: _Fields, values: dict[Any, Any]) -> tuple[str | None, str | None]:
    web = _url(f, values, "webUrl")
    original = _url(f, values, "originalUrl")
    if (web is None and values.get("webUrl") is not None) or (
        original is None and values.get("originalUrl") is not None
    ):
        return None, None  # a link that is there but unusable: already reported
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
        f.error(name, f"must be a URL, not {kind_of_value(value)}")
        return None
    if len(value.strip()) > MAX_URL_CHARS:
        f.error(name, f"longer than {MAX_URL_CHARS:,} characters")
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
        parsed = _parse_date_text(value.strip())
        if parsed is None:
            return None
        dt = parsed
    else:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset
        return None


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
            name = _name(raw.get("name"), s) or None
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


def _items(f: _Fields, name: str, raw: list[Any], cap: int, make: Callable[[Any], T | None], skipped: str) -> list[T]:
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


def _list(f: _Fields, values: dict[Any, Any], name: str, what: str) -> list[Any] | None:
    raw = values.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        f.warn(name, f"must be a list of {what}, not {kind_of_value(raw)}")
        return None
    return raw


def _topics(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[str, ...]:
    raw = values.get("topics")
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        items: list[Any] | None = [raw]  # lenient: one topic written without a list
    else:
        items = _list(f, values, "topics", "names")
    if items is None:
        return ()
    seen: set[str] = set()

    def make(item: Any) -> str | None:
        name = _name(item, s)
        if not name:
            return None
        slug = topic_slug(name)
        if slug in seen:
            return _REPEAT  # the same topic spelt again ("AI", "ai")
        seen.add(slug)
        return name

    return tuple(_items(f, "topics", items, s.max_topics, make, "not a usable topic name; skipped"))


def _images(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[Image, ...]:
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


def _related(f: _Fields, values: dict[Any, Any], s: Settings) -> tuple[Related, ...]:
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
    text = _as_text(item.get("title"))
    title = _clean(text, s, s.max_title_chars)[0] if text is not None else ""
    if not title:
        return None
    provider = item.get("provider")
    name = _name(provider.get("name"), s) if isinstance(provider, dict) else ""
    return Related(title=title, url=url, provider_name=name or None)


def _quality(f: _Fields, values: dict[Any, Any]) -> float:
    value = values.get("quality")
    if value is None:
        return 0.0
    if isinstance(value, str):
        try:
            value = float(value) if len(value) <= 64 else value
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        f.warn("quality", f"must be a number, not {kind_of_value(value)}; using 0")
        return 0.0
    if not math.isfinite(value):
        f.warn("quality", "must be a finite number; using 0")
        return 0.0
    return float(value)


def _heat(f: _Fields, values: dict[Any, Any]) -> int | None:
    value = values.get("heat")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        f.warn("heat", f"must be a whole number, not {kind_of_value(value)}; ignored")
        return None
    return int(value)


def _published(f: _Fields, values: dict[Any, Any]) -> bool:
    value = values.get("published", True)
    if not isinstance(value, bool):
        # Unclear means unpublished: a record must never leak by accident.
        f.warn("published", f"must be true or false, not {kind_of_value(value)}; treated as false")
        return False
    return value


def _published_fields(r: Record) -> Iterable[tuple[str, str]]:
    yield "title", r.title
    yield "excerpt", r.excerpt
    yield "webUrl", r.link
    yield "originalUrl", r.canonical_url
    yield "provider", f"{r.provider.name}\n{r.provider.domain}"
    yield "topics", "\n".join(r.topics)
    yield "images", "\n".join(i.url for i in r.images)
    yield "related", "\n".join(f"{x.title}\n{x.url}\n{x.provider_name or ''}" for x in r.related)
    yield "category", r.category or ""
    yield "type", r.type or ""


def _leaks_secured(f: _Fields, secured: Any, record: Record) -> bool:
    """Reject a record that copies its secured value, or a part of it, into a published field.

    Each ``;``-separated piece is looked for, and the first, middle and last
    24 characters of a longer one (a cut copy still holds one of them). A few
    searches, not one per window: this runs for every record. The message
    never quotes the value.
    """
    if not isinstance(secured, str) or len(secured) < _MIN_SECRET_PIECE:
        return False
    needles: set[str] = set()
    for piece in secured.split(";"):
        piece = piece.strip()
        if len(piece) >= _MIN_SECRET_PIECE:
            needles.add(piece)
            if len(piece) > _SLICE:
                middle = (len(piece) - _SLICE) // 2
                needles.update((piece[:_SLICE], piece[middle : middle + _SLICE], piece[-_SLICE:]))
    fields = list(_published_fields(record))
    everything = "\n".join(text for _, text in fields)
    if not any(needle in everything for needle in needles):
        return False
    where = next(name for name, text in fields if any(n in text for n in needles))
    f.error("secured", f"its value, or a part of it, also appears in {where}; refusing to publish the record")
    return True


def kind_of_value(value: Any) -> str:
    """What a YAML value is, in a message's words ("not a list"): every rejection says it so."""
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
