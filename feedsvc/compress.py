"""The one gzip encoding of a document, shared by the web app and the static build.

nginx's gzip_static serves the .gz file `feedsvc build` writes, and the web app
sends its own precomputed gzip body: both come from this function, so a client
gets the same bytes (and so the same ETag) either way. mtime=0 keeps the clock
out of the gzip header.
"""

from __future__ import annotations

import gzip

#: Computed once per document, so the slowest, smallest setting costs nothing per request.
LEVEL = 9


def gzip_body(body: bytes, level: int = LEVEL) -> bytes | None:
    """`body` gzipped, or None when that would not make it smaller.

    `level` is for documents made per request (custom feeds), which use a
    faster one; every published document uses `LEVEL`.
    """
    packed = gzip.compress(body, compresslevel=level, mtime=0)
    return packed if len(packed) < len(body) else None
