"""The rules for fields that hold one value: text, links, dates, numbers, flags.

Each ``*_field`` function reads one field (two for the links) from the front
matter mapping and returns its checked, normalised value or None, reporting
through `Problems`: a required field that is unusable is an error (the record
is rejected), an optional one is dropped with a warning. docs/design.md
("Input rules") says why each rule is what it is.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from feedsvc.records.problems import Problems, kind_of_value
from feedsvc.text import MAX_URL_CHARS, canonical_url, http_url, plain_text

if TYPE_CHECKING:  # the settings are defined beside the record assembly, which calls these rules
    from feedsvc.records.fields import Settings

#: Dates outside [EARLIEST, LATEST) are rejected: before 1990 there was no
#: web to publish on (the W3C feed validator calls such dates implausible), and
#: after 2100 is a typo, not a schedule. Fixed bounds, so what is published
#: never depends on the clock.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: Longest topic name, provider name and category or type kept, in characters.
MAX_NAME_CHARS = 100


def text_field(
    f: Problems, values: dict[Any, Any], name: str, s: Settings, limit: int, required: bool = False
) -> str | None:
    value = values.get(name)
    if value is None:
        if required:
            f.error(name, "missing" if name not in values else "empty")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text: str | None = f.source(name, value)
    else:
        text = as_text(value)
    if text is None:
        hint = " (put it in quotes)" if isinstance(value, bool) else ""
        (f.error if required else f.warn)(name, f"must be text, not {kind_of_value(value)}{hint}")
        return None
    cleaned, cut = clean(text, s, limit)
    if not cleaned:
        if required:
            f.error(name, "empty")
        return None
    if cut:
        f.warn(name, f"longer than {limit:,} characters; cut to fit")
    return cleaned


def clean(text: str, s: Settings, limit: int) -> tuple[str, bool]:
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


def display_name(value: Any, s: Settings) -> str:
    """A short display name (topic, provider), or "" when there is none."""
    text = as_text(value)
    return clean(text, s, MAX_NAME_CHARS)[0] if text is not None else ""


def as_text(value: Any) -> str | None:
    """Text, or a scalar YAML read as something else (a number, a date)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, date)):
        return value.isoformat() if isinstance(value, date) else str(value)
    return None


def link_fields(f: Problems, values: dict[Any, Any]) -> tuple[str | None, str | None]:
    """The link (webUrl, else originalUrl) and the canonical URL the entry id is made from."""
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


def _url(f: Problems, values: dict[Any, Any], name: str) -> str | None:
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


def date_field(f: Problems, values: dict[Any, Any], name: str, required: bool) -> datetime | None:
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


def quality_field(f: Problems, values: dict[Any, Any]) -> float:
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


def heat_field(f: Problems, values: dict[Any, Any]) -> int | None:
    value = values.get("heat")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        f.warn("heat", f"must be a whole number, not {kind_of_value(value)}; ignored")
        return None
    return int(value)


def published_field(f: Problems, values: dict[Any, Any]) -> bool:
    value = values.get("published", True)
    if not isinstance(value, bool):
        # Unclear means unpublished: a record must never leak by accident.
        f.warn("published", f"must be true or false, not {kind_of_value(value)}; treated as false")
        return False
    return value
