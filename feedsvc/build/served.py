"""What a server needs to know of each document the build wrote: its manifest entry, and the manifest.

`feedsvc build` is the only code that makes documents. For each one it writes
the file (and its ``.gz``) into the output folder and, in the same build, a
`Served` row into the cache's ``documents`` table: media type, the ETag and
length of each encoding, Last-Modified and the cache policy. `feedsvc serve`
answers from those rows and the files alone, so a worker's memory grows with
the documents it has been asked for, never with the records.

ETags hash the bytes sent (so each encoding has its own) and Last-Modified is
the newest entry's date: nothing comes from the clock or the process, so
every worker, a restarted server, nginx in front and a second machine give
the same validators for the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache

from feedsvc.model import Document

#: Cache policies a document can have. Every document is revalidated once
#: its max-age is over (ETag, Last-Modified, 304): no URL is ever `immutable`,
#: since a build may give any of them new bytes (a correction, a takedown).
#: A feed, listing or page: `server.cache_max_age`.
REVALIDATE = 0
#: An RFC 5005 archive page: `ARCHIVE_MAX_AGE`. Its bytes change only when a
#: record on it (or a page boundary beside it) changes, which is rare, so
#: caches may keep it longer than a feed; a correction or a takedown reaches
#: a cache that holds it within that time.
ARCHIVE = 1
#: Seconds an archive page may be used from a cache without asking again
#: (one day). deploy/nginx-static.conf sends the same (tests/e2e/test_nginx.py checks).
ARCHIVE_MAX_AGE = 86_400


def etag_of_digest(sha256_hex: str) -> str:
    """The strong ETag of bytes whose SHA-256 is `sha256_hex`: 128 bits of it, quoted."""
    return '"' + sha256_hex[:32] + '"'


def etag_of(body: bytes) -> str:
    """The strong ETag of `body` (see `etag_of_digest`)."""
    return etag_of_digest(hashlib.sha256(body).hexdigest())


@lru_cache(maxsize=8192)
def http_date_of(epoch: int) -> str:
    """An HTTP date (RFC 9110 5.6.7, IMF-fixdate) for whole seconds since the epoch; many documents share one."""
    return formatdate(epoch, usegmt=True)


@dataclass(frozen=True, slots=True)
class Served:
    """One document as the server sends it: the row the build keeps for it."""

    #: URL path without the leading slash ("feeds/topics/ai.atom").
    path: str
    media_type: str
    #: The newest entry's time in whole seconds since the epoch; None when undated.
    last_modified: int | None
    #: `REVALIDATE` or `ARCHIVE`: which max-age, before a conditional request.
    policy: int
    etag: str
    size: int
    #: The ``.gz`` file beside it; None when gzip would not make it smaller.
    gz_etag: str | None
    gz_size: int | None

    @property
    def last_modified_http(self) -> str | None:
        return http_date_of(self.last_modified) if self.last_modified is not None else None

    @classmethod
    def of(cls, doc: Document, etag: str, size: int, gz: tuple[str, int] | None) -> Served:
        """The entry of `doc`, whose file has `etag` and `size` and its .gz `gz` (ETag, size)."""
        when = doc.last_modified
        return cls(
            doc.path, doc.media_type, int(when.timestamp()) if when else None, ARCHIVE if doc.archive else REVALIDATE,
            etag, size, gz[0] if gz else None, gz[1] if gz else None,
        )  # fmt: skip

    def as_row(self) -> tuple[object, ...]:
        return (
            self.path, self.media_type, self.last_modified, self.policy,
            self.etag, self.size, self.gz_etag, self.gz_size,
        )  # fmt: skip


class Manifest:
    """The cache's ``documents`` table, with the generation and totals servers watch.

    It shares its `Store`'s connection (and so its transactions): the build
    writes the rows in the transaction that clears its pending mark.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def set(self, served: Iterable[Served], removed: Iterable[str], published_ns: int, *, after: int = 0) -> None:
        """Record the documents a build wrote and those it removed; a new generation.

        Call after the files are written: a server trusts a file only if it is
        older than `published_ns` (see `web.output`).
        """
        self.db.executemany("INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?)", [s.as_row() for s in served])
        self.db.executemany("DELETE FROM documents WHERE path=?", [(p,) for p in removed])
        generation, _ = self.state()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(max(generation, after) + 1),))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('published_ns', ?)", (str(published_ns),))

    def etags(self) -> dict[str, str]:
        """Every served document's plain ETag, by path."""
        return dict(self.db.execute("SELECT path, etag FROM documents").fetchall())

    def document(self, path: str) -> Served | None:
        row = self.db.execute("SELECT * FROM documents WHERE path=?", (path,)).fetchone()
        return Served(*row) if row is not None else None

    def state(self) -> tuple[int, int]:
        """(generation, published_ns) of the documents table: 0, 0 before the first build."""
        meta = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'published_ns')"))
        return int(meta.get("generation", 0)), int(meta.get("published_ns", 0))

    def counts(self) -> tuple[int, int]:
        """(feeds, documents) served."""
        (feeds,) = self.db.execute("SELECT count(*) FROM summaries").fetchone()
        (documents,) = self.db.execute("SELECT count(*) FROM documents").fetchone()
        return feeds, documents

    def record_totals(self, loaded: int, rejected: int) -> None:
        """Keep what /healthz shows in one row: counting 100,000 rows is the build's job.

        A worker reads it (`totals`) at every new build it notices; a count of
        the files table there would stall its requests each time.
        """
        value = json.dumps([loaded, rejected, *self.counts()])
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('totals', ?)", (value,))

    def totals(self) -> tuple[int, int, int, int] | None:
        """(records loaded, records rejected, feeds, documents) as the last build recorded them."""
        row = self.db.execute("SELECT value FROM meta WHERE key='totals'").fetchone()
        if row is None:
            return None
        loaded, rejected, feeds, documents = json.loads(row[0])
        return int(loaded), int(rejected), int(feeds), int(documents)
