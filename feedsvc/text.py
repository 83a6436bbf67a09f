"""Normalising untrusted text, URLs and names before they reach a feed.

Every string a record carries passes through here once, at load time, so the
renderers can trust what they get: no character XML 1.0 forbids, no markup in
plain-text fields, only http(s) URLs, and keys that are safe as one path segment.
"""

from __future__ import annotations

import functools
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
#: What a file may not hold at all (removed with a warning), and the C1
#: controls (U+0080 to U+009F), found together in one pass over a file.
FILE_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_FILE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
# C1 controls are part of mojibake ("â€\x9d" is a misread "”", "Ð\x9f" a
# misread "П"), and ftfy can only repair it with them in place; but YAML
# refuses them in a file. So the loader parks each as a stand-in from a
# private-use plane while YAML reads the file, and `plain_text` puts them back
# before repairing. Whatever is left is removed like any control character.
_STANDIN_OFFSET = 0xF0000
_HIDE_C1 = {c: c + _STANDIN_OFFSET for c in range(0x80, 0xA0)}
_RESTORE_C1 = {c + _STANDIN_OFFSET: c for c in range(0x80, 0xA0)}
_STANDINS = re.compile("[\U000f0080-\U000f009f]")
#: Removed before mojibake is repaired: what neither ftfy nor XML can use.
_BEFORE_REPAIR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
#: What a published text field may not hold: the above, plus C1 controls,
#: U+FFFD (the W3C feed validator flags both as signs of broken encoding),
#: the Unicode noncharacters, which make an HTML parser (html5lib) report an
#: error, and left-over stand-ins. The one set for every text that is
#: published: record fields lose these characters (`plain_text`, and
#: `formats.common.plain` as the last line of defence), and config.py refuses
#: a setting holding one (site.title and site.description are in every feed
#: and page; a lone surrogate could not even be written as UTF-8).
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(p + 0xFFFE)}{chr(p + 0xFFFF)}" for p in range(0x10000, 0x110000, 0x10000)
)
UNPUBLISHABLE = re.compile(
    f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd\ufffe\uffff{_NONCHARACTERS}\U000f0080-\U000f009f]"
)


def publishable(text: str) -> str:
    """`text` without what `UNPUBLISHABLE` matches; printable ASCII holds none of it (checked first: most text)."""
    if text.isascii() and text.isprintable():
        return text
    return UNPUBLISHABLE.sub("", text)


#: "<" before a letter, "/", "!" or "?" reads as a tag: the W3C validator flags
#: it in an RSS plain-text field, so what nh3 leaves of it gets a space.
_TAG_START = re.compile(r"<(?=[/!?]|[^\W\d_])")
#: A "%" that does not start a percent-escape.
BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SPACE = re.compile(r"\s+")
#: ASCII characters `plain_text` would change: controls and markup (odd
#: spaces are found with str methods: one class scans faster than alternatives).
_PLAIN_ODD = re.compile(r"[\x00-\x1f\x7f<&]")
#: An ASCII http(s) URL already normalised: lower-case scheme and host, no
#: port, user or fragment, only characters that need no escaping.
#: (A "%" must start an escape: checked apart, as one class scans much faster
#: than an alternation tried at every character.)
_URL_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@/%"
_FAST_URL = re.compile(
    rf"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+)(?P<path>/[{_URL_CHARS}]*)?(?:\?(?P<query>[{_URL_CHARS}?]+))?"
)
#: Where a block element starts or ends, words on either side stay apart.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|tr|td|th|table|blockquote|section|article|header"
    r"|footer|aside|nav|pre|figure|figcaption|iframe|img|video|audio|svg|form|main|title|script|style)\b)",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"<[A-Za-z!/?]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*$")
#: What may stay as it is in a URL's path, query and fragment; everything else
#: (brackets too: RFC 3986 allows them only in an IPv6 host) is percent-encoded.
URL_SAFE = "!#$%&'()*+,/:;=?@~"
MAX_SLUG = 80
ELLIPSIS = "…"
#: Longest URL published, in characters: what browsers and sitemaps support.
MAX_URL_CHARS = 2_048

_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
}


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable_name(name: str, *, backslashes: bool = True) -> str:
    r"""`name` as one line of printable text, every other character spelled out.

    Report lines are ``file:line: field: reason``, one per problem, and a file
    name is whatever the records folder holds: a newline in it would start a
    line that looks like a real report, and an ANSI escape (ESC, CSI) or a
    bidi override would act on the terminal or log viewer. So each character
    Python does not call printable is escaped as a Python string literal
    spells it:

    - ``\\`` for a backslash (so an escape cannot be forged either, and two
      names never look alike), ``\n``, ``\r`` and ``\t``;
    - ``\xNN`` for the other C0 controls and DEL, and for a byte that is not
      UTF-8 (`os.fsdecode` gives it as a lone surrogate, U+DC80 to U+DCFF):
      ``bad\xff.txt`` is the file whose name holds the byte 0xFF;
    - ``\uNNNN`` (``\UNNNNNNNN`` above U+FFFF) for any other character that
      is not printable: C1 controls, line and paragraph separators, format
      characters such as U+202E, private-use and unassigned code points.

    Printable text, accents and other scripts included, stays as it is, and
    different names always give different text. `backslashes=False` leaves
    backslashes as they are, for text that spells escapes itself (PyYAML's
    wording of an error) and only needs its controls escaped.
    """
    if name.isascii() and name.isprintable() and (not backslashes or "\\" not in name):
        return name  # nearly every name: nothing to do
    out = []
    for c in name:
        if c.isprintable() and (c != "\\" or not backslashes):
            out.append(c)
        elif c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        else:
            code = ord(c)
            if code < 0x80:
                out.append(f"\\x{code:02x}")
            elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte it stands for
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def clean_file_text(text: str) -> tuple[str, int | None]:
    """A file's text made readable for YAML, and the line of the first character removed.

    Characters no file may hold (C0 controls but tab, LF and CR; DEL; U+FFFE,
    U+FFFF) are removed; C1 controls are kept, as stand-ins (see above).
    """
    removed = _FILE_FORBIDDEN.search(text)
    line = text.count("\n", 0, removed.start()) + 1 if removed else None
    if removed:
        text = _FILE_FORBIDDEN.sub("", text)
    if not text.isascii():
        text = text.translate(_HIDE_C1)
    return text, line


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
    if (
        value.isascii()
        and not _PLAIN_ODD.search(value)
        and "  " not in value
        and not value.startswith(" ")
        and not value.endswith(" ")
    ):
        # Nothing below would change it (most text): skip the passes.
        return truncate(value, max_chars) if max_chars is not None and len(value) > max_chars else value
    return _plain_text(value, repair, max_chars)


def _plain_text(value: str, repair: bool, max_chars: int | None) -> str:
    text = _BEFORE_REPAIR.sub("", value)
    if not text.isascii():
        if _STANDINS.search(text):
            text = text.translate(_RESTORE_C1)
        if repair:
            text = ftfy.fix_encoding(text)
    # Escaped markup ("&lt;b&gt;") turns into markup when unescaped: repeat
    # until no tag or entity is left (three rounds undo triple escaping).
    for _ in range(3):
        if not _MARKUP.search(text):
            break
        text = _BLOCK_TAG.sub(" <", text)
        text = html.unescape(nh3.clean(text, tags=set(), clean_content_tags={"script", "style"}))
    text = publishable(text)
    text = unicodedata.normalize("NFC", _SPACE.sub(" ", text).strip())
    if "<" in text:
        text = _TAG_START.sub("< ", text)
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
    if not text or len(text) > MAX_URL_CHARS:
        return None
    fast = _FAST_URL.fullmatch(text)
    if fast and _DOMAIN.match(fast["host"]) and not ("%" in text and BARE_PERCENT.search(text)):
        # Already in the form the general path below would give (most URLs).
        return f"{fast['scheme']}://{fast['host']}{fast['path'] or '/'}{'?' + fast['query'] if fast['query'] else ''}"
    return _general_http_url(text)


def _general_http_url(text: str) -> str | None:
    if FORBIDDEN_CHARS.search(text) or _SPACE.search(text) or "\\" in text or _STANDINS.search(text):
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
    path, query, fragment = (encode_url_part(part) for part in (parts.path or "/", parts.query, parts.fragment))
    return urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))


def encode_url_part(part: str) -> str:
    """A URL's path, query or fragment percent-encoded where a URI may not hold it.

    Existing escapes stay as they are; a "%" that starts none is escaped itself.
    """
    return quote(BARE_PERCENT.sub("%25", part), safe=URL_SAFE)


def canonical_url(url: str) -> str:
    """The identity of an article's URL: no fragment, no default port."""
    fast = _FAST_URL.fullmatch(url)
    if fast and fast["path"]:  # no port, fragment or empty part: already its own identity
        return url
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


#: Single letters joined by dots, as an initialism is written ("A.I.", "U.S", "e.g.").
_DOTTED_LETTERS = re.compile(r"(?<![^\W_])[^\W\d_](?:\.[^\W\d_])+\.?(?![^\W_])")


@functools.lru_cache(maxsize=65_536)
def topic_slug(name: str) -> str:
    """A URL-safe key for a topic name that merges spellings a person would merge.

    Dots between single letters go first, so an initialism is one topic
    however it is dotted ("A.I.", "A.I" and "AI" are ``ai``; "U.S." is ``us``),
    where slugging alone would make "A.I" ``a-i``. Then case, punctuation and
    accents fold together and other scripts are transliterated
    (python-slugify). A name that slugs to nothing (only emoji, say) gets
    ``topic-`` plus a hash of the name, so it still has a feed.
    """
    if "." in name:
        name = _DOTTED_LETTERS.sub(lambda m: m[0].replace(".", ""), name)
    slug = slugify(name, max_length=MAX_SLUG, word_boundary=True)
    if slug:
        return slug
    digest = hashlib.sha256(unicodedata.normalize("NFC", name).casefold().encode("utf-8"))
    return "topic-" + digest.hexdigest()[:12]


def image_media_type(url: str) -> str | None:
    """The media type an image URL's extension names, if it names one we know."""
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    return _IMAGE_TYPES.get(ext)
