"""Normalising untrusted text, URLs and names before they reach a feed.

Every string a record carries passes through here once, at load time, so the
renderers can trust what they get: no character XML 1.0 forbids, no markup in
plain-text fields, only http(s) URLs, and keys that are safe as one path segment.
"""

from __future__ import annotations

import hashlib
import html
import posixpath
import re
import unicodedata
from urllib.parse import quote, urlsplit, urlunsplit

import ftfy
import nh3
from slugify import slugify

#: Characters XML 1.0 forbids, or that YAML refuses in a stream (C0 and C1
#: controls but tab, LF, CR and NEL; DEL; surrogates; U+FFFE and U+FFFF).
FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
#: What a published text field may not hold: the above, plus NEL and U+FFFD,
#: which the W3C feed validator flags as signs of broken encoding.
_UNPUBLISHABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd\ufffe\uffff]")
_SPACE = re.compile(r"\s+")
_MARKUP = re.compile(r"<[A-Za-z!/?]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*$")
# What may stay as it is in a URL; everything else is percent-encoded.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
MAX_SLUG = 80
ELLIPSIS = "…"

_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
}


def strip_forbidden(text: str) -> str:
    """Remove characters that XML 1.0 forbids (and YAML refuses)."""
    return FORBIDDEN_CHARS.sub("", text)


def plain_text(
    value: str,
    *,
    repair: bool = True,
    max_chars: int | None = None,
) -> str:
    """Turn a scraped string into one line of plain text fit for any feed field.

    Mojibake is repaired (encoding only: ftfy's `fix_encoding`, which leaves
    correct text, curly quotes included, as it is); markup is reduced to its
    text (scripts and styles dropped, entities decoded), so a title never
    carries a tag; whitespace runs become one space; over `max_chars` the text
    is cut at a word boundary and ends with "…".
    """
    text = _UNPUBLISHABLE.sub("", value)
    if repair and not text.isascii():
        text = ftfy.fix_encoding(text)
    # Escaped markup ("&lt;b&gt;") turns into markup when unescaped: repeat
    # until no tag or entity is left (three rounds undo triple escaping).
    for _ in range(3):
        if not _MARKUP.search(text):
            break
        text = html.unescape(nh3.clean(text, tags=set(), clean_content_tags={"script", "style"}))
    text = _UNPUBLISHABLE.sub("", text)
    text = unicodedata.normalize("NFC", _SPACE.sub(" ", text).strip())
    if max_chars is not None and len(text) > max_chars:
        text = truncate(text, max_chars)
    return text


def truncate(text: str, max_chars: int) -> str:
    """Cut `text` to at most `max_chars` characters, at a space when one is near."""
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars * 0.8:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def http_url(value: str) -> str | None:
    """The URL normalised for publishing, or None unless it is absolute http(s).

    Non-ASCII characters are percent-encoded and an internationalised host is
    written in punycode, so the result is a plain URI every reader accepts.
    """
    text = value.strip()
    if not text or FORBIDDEN_CHARS.search(text) or _SPACE.search(text) or "\\" in text:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    host = normalize_host(parts.hostname or "")
    if host is None or parts.username is not None or parts.password is not None:
        return None
    netloc = host if port is None else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE)
    fragment = quote(parts.fragment, safe=_URL_SAFE)
    return urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))


def canonical_url(url: str) -> str:
    """The identity of an article's URL: no fragment, no default port."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if (parts.scheme, parts.port) in (("http", 80), ("https", 443)):
        netloc = parts.hostname or netloc
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def normalize_host(value: str) -> str | None:
    """A host name lower-cased, in punycode, without a trailing dot; None if invalid."""
    host = value.strip().rstrip(".").lower()
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host if _DOMAIN.match(host) else None


def provider_key(value: str) -> str | None:
    """The key of a provider's feed: its domain without a leading ``www.``.

    Also accepts a URL where a domain was expected. None when nothing usable
    remains; the result only ever holds ``[a-z0-9.-]`` and never ``..``.
    """
    text = value.strip()
    if "://" in text:
        try:
            text = urlsplit(text).hostname or ""
        except ValueError:
            return None
    host = normalize_host(text)
    if host is None:
        return None
    if host.startswith("www.") and host.count(".") >= 2:
        host = host[4:]
    return host


def topic_slug(name: str) -> str:
    """A URL-safe key for a topic name that merges spellings a person would merge.

    Case, punctuation and accents fold together and other scripts are
    transliterated (python-slugify). A name that slugs to nothing (only emoji,
    say) gets ``topic-`` plus a hash of the name, so it still has a feed.
    """
    slug = slugify(name, max_length=MAX_SLUG, word_boundary=True)
    if slug:
        return slug
    digest = hashlib.sha256(unicodedata.normalize("NFC", name).casefold().encode("utf-8"))
    return "topic-" + digest.hexdigest()[:12]


def image_media_type(url: str) -> str | None:
    """The media type an image URL's extension names, if it names one we know."""
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    return _IMAGE_TYPES.get(ext)
