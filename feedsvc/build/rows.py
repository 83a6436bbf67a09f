"""What the cache keeps of each record file: the types that cross its boundary, and their encodings.

`Stamp` says a file is unchanged without reading it (the build's scan, the
server's check of a file it sends); `Parsed` is one parse as a worker process
hands it to the cache; a cached record travels with a checksum (`rec_sum`)
checked on every use (`decode`), and a file's problems as a marshal blob.
Here too, the order of a feed's members in SQL, which every query that lists
entries uses (`NEWEST_FIRST` is `feeds.rules`' order, as the cache's
``members_order`` index holds it).
"""

from __future__ import annotations

import hashlib
import marshal
import os
from dataclasses import dataclass

from feedsvc.errors import FeedsvcError, RecordError
from feedsvc.model import Record
from feedsvc.records import codec

#: A scanned file as (path, size, mtime_ns, inode): the build's scan of 100,000
#: files keeps these plain tuples (compared, hashed and marshalled as they
#: are, where an object per file would cost as much as the stat); `Stamp.of_row`
#: names their fields.
ScanRow = tuple[str, int, int, int]

#: The one order of a feed's entries: newest published first, ties by entry id
#: (as `members_order` indexes it). Every query that lists entries uses it.
NEWEST_FIRST = "m.published DESC, m.id"
#: The members from one entry on, in `NEWEST_FIRST` order: those at or after
#: (published, id), given as (published, published, id). The index seeks to
#: it, where an OFFSET walks every entry before it (deep in a long feed, the
#: most of an archives-on build at 100,000 records).
FROM_ENTRY = "m.published <= ? AND NOT (m.published = ? AND m.id < ?)"


@dataclass(frozen=True, slots=True)
class Stamp:
    """A file's identity: unchanged stamp means unchanged file (no read needed)."""

    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    @classmethod
    def of_row(cls, row: ScanRow) -> Stamp:
        return cls(row[1], row[2], row[3])


@dataclass(frozen=True, slots=True)
class Parsed:
    """One file's parse, encoded for the cache (made in worker processes)."""

    rel: str
    stamp: Stamp
    digest: str
    #: codec-encoded Record, or None if the file was rejected.
    rec: bytes | None
    id: str | None
    updated: int | None
    published: int | None
    #: Whether the record passes the filters (published flag, min_quality).
    selected: bool
    #: (feed key text, display name) for each feed the record belongs to.
    feeds: tuple[tuple[str, str], ...]
    problems: tuple[RecordError, ...]
    #: Why the record is not published (None: it is), for the summary line.
    left_out: str | None = None


class CacheDamaged(FeedsvcError):
    """The cache holds something it did not write: it cannot be trusted."""


def rec_sum(rec: bytes) -> int:
    """The checksum kept beside each cached record (64 bits of BLAKE2b), checked on every use."""
    return int.from_bytes(hashlib.blake2b(rec, digest_size=8).digest(), "big", signed=True)


def decode(rec: bytes, check: int | None) -> Record:
    """A cached record, verified: a flipped byte must never reach a feed."""
    if not isinstance(rec, bytes) or check is None or rec_sum(rec) != check:
        raise CacheDamaged("a cached record does not match its checksum")
    try:
        return codec.decode(rec)
    except Exception as e:  # noqa: BLE001 - whatever a damaged blob makes marshal do
        raise CacheDamaged(f"a cached record cannot be read ({type(e).__name__})") from None


def encode_problems(problems: tuple[RecordError, ...]) -> bytes | None:
    if not problems:
        return None
    return marshal.dumps(tuple((p.path, p.field, p.reason, p.line, p.severity) for p in problems))


def decode_problems(blob: bytes) -> list[RecordError]:
    return [RecordError(*p) for p in marshal.loads(blob)]
