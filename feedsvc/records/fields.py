"""The record assembly: a front-matter mapping → a checked, normalised `Record`.

A record is usable when it has a title, a link (webUrl, else originalUrl; only
http and https) and a parseable publishedDateTime. Everything else is optional:
an optional field of the wrong type is dropped with a warning, a required one
rejects the record. Each field's rule lives in `scalars.py` (one value) or
`structured.py` (a mapping or a list); what spans fields lives here: the
settings they read by, the entry id, updated never before published, and the
``secured`` value never copied into a published field. See docs/design.md
("Input rules") for each decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from feedsvc.config import Config, LimitsConfig
from feedsvc.errors import RecordError
from feedsvc.model import Record
from feedsvc.records.problems import Problems
from feedsvc.records.scalars import (
    MAX_NAME_CHARS,
    date_field,
    heat_field,
    link_fields,
    published_field,
    quality_field,
    text_field,
)
from feedsvc.records.structured import images_field, provider_field, related_field, topics_field

#: A secured piece this long is looked for in the published fields.
_MIN_SECRET_PIECE = 8
_SLICE = 24


@dataclass(frozen=True, slots=True)
class Settings(LimitsConfig):
    """The part of `Config` that decides how a record is read: the limits
    (`config.LimitsConfig`, where their defaults live) and the mojibake repair."""

    repair_mojibake: bool = True

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(**dataclasses.asdict(config.limits), repair_mojibake=config.repair_mojibake)


def record_from_mapping(
    rel: str, values: dict[Any, Any], text: str, settings: Settings, problems: list[RecordError]
) -> Record | None:
    """Build a `Record` from front matter, or None (with errors) if it is unusable.

    `text` is the front matter as it stands in the file, for line numbers.
    """
    f = Problems(rel, text, problems)
    title = text_field(f, values, "title", settings, settings.max_title_chars, required=True)
    link, canonical = link_fields(f, values)
    published = date_field(f, values, "publishedDateTime", required=True)
    updated = date_field(f, values, "updatedDateTime", required=False)
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
        excerpt=text_field(f, values, "excerpt", settings, settings.max_excerpt_chars) or "",
        provider=provider_field(f, values, link, settings),
        topics=topics_field(f, values, settings),
        images=images_field(f, values, settings),
        related=related_field(f, values, settings),
        category=text_field(f, values, "category", settings, MAX_NAME_CHARS),
        type=text_field(f, values, "type", settings, MAX_NAME_CHARS),
        quality=quality_field(f, values),
        heat=heat_field(f, values),
        is_published=published_field(f, values),
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


def _leaks_secured(f: Problems, secured: Any, record: Record) -> bool:
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
