"""The one gzip encoding of a document, shared by the web app and the static build.

nginx's gzip_static serves the .gz file `feedsvc build` writes, and the web app
sends its own precomputed gzip body: both come from this function, so a client
gets the same bytes (and so the same ETag) either way. mtime=0 keeps the clock
out of the gzip header.
"""

from __future__ import annotations

import gzip
from dataclasses import replace

from feedsvc.model import Document

#: zlib's default, chosen by measurement (docs/benchmarks.md): on a build's
#: documents level 9 is 0.3 % smaller and takes 29 % longer; level 5 saves a
#: further 25 % of the time for 1.5 % more bytes. The same for every document
#: but archive pages, built or made per request (custom feeds): these are the
#: ones readers poll.
LEVEL = 6
#: Archive pages: fetched once by a reader walking a feed's history, never
#: polled, and with archives on most of a build's bytes (2.3 of 2.6 GB at
#: 100,000 records). Measured on them: level 3 takes 41 % of level 6's time
#: for 10 % more bytes (17.7 % of the XML against 16.1 %); levels 2 and 1
#: save little more time for as many bytes again.
ARCHIVE_LEVEL = 3


def level_of(doc: Document) -> int:
    """The gzip level of `doc` (`LEVEL`, or `ARCHIVE_LEVEL` for an archive page)."""
    return ARCHIVE_LEVEL if doc.archive else LEVEL


def gzip_body(body: bytes, level: int = LEVEL) -> bytes | None:
    """`body` gzipped, or None when that would not make it smaller."""
    packed = gzip.compress(body, compresslevel=level, mtime=0)
    return packed if len(packed) < len(body) else None


def gzipped(doc: Document) -> bytes | None:
    """The gzip form of `doc`'s body (computed now unless `with_gzip` did), or None when
    gzip does not make it smaller."""
    packed = doc.packed if doc.packed is not None else gzip_body(doc.body, level_of(doc))
    return packed or None


def with_gzip(doc: Document) -> Document:
    """`doc` with its gzip form computed (where it was rendered, so in parallel)."""
    return doc if doc.packed is not None else replace(doc, packed=gzip_body(doc.body, level_of(doc)) or b"")
