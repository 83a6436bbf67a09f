"""RFC 5005 archive paging: which entries each archive page holds, and its name.

The subscription document holds a feed's newest `max_entries` entries; every
older entry is on exactly one archive page. Page boundaries are
content-defined, as rsync and backup tools cut chunks, so that they do not
move when records come, go or change elsewhere:

- Walk the archived entries oldest first (the reverse of the feed's order).
  An entry is a *candidate* when the first 8 bytes of the SHA-256 of its id,
  read as a number, fall below a threshold chosen so that pages average
  `page_size` entries.
- A candidate starts a new page (a *natural* boundary) unless another
  candidate is among the `min_size - 1` entries before it, or it is among the
  feed's `min_size` oldest: pages are never shorter than `min_size`. Whether
  an entry starts a page depends on that entry and the few before it only,
  never on where earlier pages happen to start, so a change ripples no
  further than the next candidate.
- Between two natural boundaries further apart than `max_size`, a page is cut
  every `max_size - min_size + 1` entries counted from the older one (a
  *forced* boundary), and a last piece shorter than `min_size` joins the page
  before it: no page is longer than `max_size`. The newest page, which new
  entries join, is the one exception to the minimum.
- The oldest page is named ``first``; every other page by its first entry:
  the date it was published (UTC) and 8 hex digits of its id's SHA-256,
  ``20230601-3f2a9b1c``. A page's URL therefore names the same stretch of
  the feed for as long as that entry starts it.

So an entry added, changed, removed or moved to another date changes the page
that holds it, at most one page beside it (a boundary appearing or going
there) and the page whose ``prev-archive`` names a page that came or went:
never the pages around them, wherever the entry's date falls. The whole
layout is a function of the entries' ids and dates alone, so a build of any
history of changes gives the pages a full build gives (`layout` is the one
implementation: the in-memory build and the cache's `build.archive.Archives.plan` call
it).

Nothing here knows about XML or URLs beyond a page's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from feedsvc.config import Config
from feedsvc.records import codec

#: The oldest page's name: it always starts at the feed's oldest archived entry.
FIRST = "first"


@dataclass(frozen=True, slots=True)
class Paging:
    """The paging rule for one configuration."""

    #: Entries the subscription document holds: the newest max_entries.
    max_entries: int
    #: The average entries per archive page (`archives.page_size`); 0 when archives are off.
    page_size: int

    @classmethod
    def from_config(cls, config: Config) -> Paging:
        """The configured paging; a page size over max_entries (set in code) is capped."""
        if not config.archives.enabled:
            return cls(config.max_entries, 0)
        return cls(config.max_entries, max(1, min(config.archives.page_size, config.max_entries)))

    @property
    def min_size(self) -> int:
        """No page but the newest has fewer entries: a quarter of page_size, at least 1."""
        return max(1, self.page_size // 4)

    @property
    def max_size(self) -> int:
        """No page has more entries: four times page_size."""
        return 4 * self.page_size

    def current(self, total: int) -> int:
        """Entries the subscription document of a feed of `total` entries holds."""
        return min(total, self.max_entries)

    def archived(self, total: int) -> int:
        """Entries of a feed of `total` that are on archive pages (its oldest ones)."""
        return max(0, total - self.max_entries) if self.page_size else 0


@dataclass(frozen=True, slots=True)
class Span:
    """One archive page: its name and its slice of the feed's entries, oldest first."""

    #: ``first``, or the first entry's date and id hash (``20230601-3f2a9b1c``).
    name: str
    #: [start, stop) in the feed's archived entries, oldest first.
    start: int
    stop: int
    #: The names of the page just older (None for the first) and just newer
    #: (None for the newest page, whose next is the subscription document).
    prev: str | None
    next: str | None


@lru_cache(maxsize=1 << 18)
def mark(entry_id: str) -> tuple[int, str]:
    """(the number the boundary rule compares, the 8 hex digits a page it starts is named by)."""
    digest = hashlib.sha256(entry_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big"), digest[8:12].hex()


@lru_cache(maxsize=64)
def threshold(page_size: int) -> int:
    """The candidate threshold (of 2**64) for pages of `page_size` entries on average.

    A natural boundary is a candidate with no candidate among the `m - 1`
    entries before it, so with a candidate probability q boundaries come at
    the rate q(1 - q)^(m - 1); q is the smaller root of rate = 1 / page_size,
    found by bisection (IEEE arithmetic: the same on every machine).
    """
    m = Paging(page_size, page_size).min_size
    if m <= 1:
        q = 1.0 / page_size
    else:
        lo, hi = 0.0, 1.0 / m
        for _ in range(80):
            mid = (lo + hi) / 2
            if mid * (1 - mid) ** (m - 1) < 1.0 / page_size:
                lo = mid
            else:
                hi = mid
        q = lo
    return min(1 << 64, int(q * (1 << 64)))


def layout(entries: Sequence[tuple[str, int]], paging: Paging) -> list[Span]:
    """The archive pages of a feed, oldest first.

    `entries` are the feed's archived entries (all but the newest
    max_entries), oldest first, as (entry id, published in microseconds
    since the epoch).
    """
    n = len(entries)
    if not n or not paging.page_size:
        return []
    m, top = paging.min_size, threshold(paging.page_size)
    marks = [mark(entry_id) for entry_id, _published in entries]
    # Natural boundaries: a candidate with no candidate in the m - 1 entries before it.
    starts = [0]
    last = -n - m  # the latest candidate so far
    for i, (value, _name) in enumerate(marks):
        if value < top:
            if i >= m and i - last >= m:
                starts.append(i)
            last = i
    # Forced boundaries in stretches longer than max_size (the newest one is open).
    step = paging.max_size - m + 1
    cuts: list[int] = []
    for a, b in zip(starts, [*starts[1:], n], strict=True):
        pieces = list(range(a, b, step))
        if b < n and len(pieces) > 1 and b - pieces[-1] < m:
            pieces.pop()
        cuts += pieces
    names: list[str] = []
    seen: set[str] = set()
    for i in cuts:
        if i == 0:
            name = FIRST
        else:
            day = codec.from_micros(entries[i][1]).date()
            name = f"{day.year:04d}{day.month:02d}{day.day:02d}-{marks[i][1]}"
        if name in seen:  # two first entries of one day whose hashes share 32 bits
            k = 2
            while f"{name}-{k}" in seen:
                k += 1
            name = f"{name}-{k}"
        seen.add(name)
        names.append(name)
    ends = [*cuts[1:], n]
    return [
        Span(names[k], cuts[k], ends[k], names[k - 1] if k else None, names[k + 1] if k + 1 < len(cuts) else None)
        for k in range(len(cuts))
    ]


def page_order(name: str) -> str:
    """A key that sorts page names by the date they start: `FIRST` before every dated name."""
    return "" if name == FIRST else name


def split(newest_first: Sequence[tuple[str, int]], paging: Paging) -> tuple[int, list[Span]]:
    """(entries the subscription document holds, the pages) of a feed whose entries are
    `newest_first` as (entry id, published microseconds)."""
    total = len(newest_first)
    archived = paging.archived(total)
    return paging.current(total), layout(list(reversed(newest_first[total - archived :])), paging)
