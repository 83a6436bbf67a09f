"""HTTP's conditional requests and content coding, as RFC 9110 words them: whether a
request's validators match (304), and whether the client takes gzip."""

from __future__ import annotations

import re
from functools import lru_cache

from werkzeug.http import parse_date

# The next entity tag in an If-None-Match list; "W/" is case-sensitive (RFC 9110 8.8.3).
_ETAG = re.compile(r'[\s,]*(?:W/)?"([^"]*)"')
_QVALUE = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")


def not_modified(inm: str | None, ims: str | None, etag: str, last_modified: int | None) -> bool:
    """Whether the client's copy is current (RFC 9110 13.2.2 order).

    If-None-Match decides when present (weak comparison: "W/" is ignored on
    both sides); If-Modified-Since counts only without it, and a value that is
    not an HTTP date is ignored.
    """
    if inm is not None:
        return etag_matches(inm, etag)
    # An HTTP date has at most one comma; more means a list, which is ignored.
    if ims is None or last_modified is None or len(ims) > 100 or ims.count(",") > 1:
        return False
    since = parse_date(ims)
    return since is not None and last_modified <= since.timestamp()


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison of `etag` (quoted, strong) against an If-None-Match value."""
    value = if_none_match.strip()
    if value == "*":
        return True
    if etag not in value:  # cheap and necessary: the quoted tag must appear
        return False
    opaque, pos = etag[1:-1], 0
    while (m := _ETAG.match(value, pos)) is not None:
        if m.group(1) == opaque:
            return True
        pos = m.end()
    return False  # the end, or a member that is not an entity tag


def wants_gzip(accept_encoding: str) -> bool:
    """Whether to send gzip for this Accept-Encoding value (RFC 9110 12.5.3).

    gzip (or x-gzip, else "*") must have a q-value above 0, and "identity"
    must not be listed with a higher one. Entries with a malformed q-value
    are ignored.
    """
    if len(accept_encoding) > 200:
        return _wants_gzip(accept_encoding)
    return _wants_gzip_cached(accept_encoding)


def _wants_gzip(value: str) -> bool:
    gzip_q: float | None = None
    star_q: float | None = None
    identity_q: float | None = None
    for item in value.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = _qvalue(params)
        if q is None:
            continue
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
        elif coding == "identity":
            identity_q = q
    q = gzip_q if gzip_q is not None else star_q
    if not q:
        return False
    return identity_q is None or q >= identity_q


_wants_gzip_cached = lru_cache(maxsize=256)(_wants_gzip)


def _qvalue(params: str) -> float | None:
    """The q parameter (1 when absent); None when it is not a valid qvalue."""
    if not params:
        return 1.0
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else None
    return 1.0
