"""RFC 5005 archive paging: how many pages a feed has and which entries each holds.

Pages fill from the oldest entry: page 1 holds the `page_size` oldest, page 2
the next ones, and a page is cut only once it is full. A new record is newer
than every page, so it lands in the subscription document and never shifts an
existing page; when the subscription document has a full page to spare beyond
`max_entries - page_size`, the oldest `page_size` of its entries become the
next page. So every entry is in exactly one document and every page, once
cut, keeps its entries (and its bytes) for good — unless a record arrives
back-dated into an already archived stretch, which re-pages from its position.

Nothing here knows about XML or URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .config import Config

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Paging:
    """The paging rule for one configuration."""

    #: Most entries a subscription document holds.
    max_entries: int
    #: Entries per archive page; 0 when archives are off.
    page_size: int

    @classmethod
    def from_config(cls, config: Config) -> Paging:
        """The configured paging; a page size over max_entries (set in code) is capped."""
        if not config.archives.enabled:
            return cls(config.max_entries, 0)
        return cls(config.max_entries, max(1, min(config.archives.page_size, config.max_entries)))

    def pages(self, total: int) -> int:
        """Archive pages of a feed of `total` entries: ceil((total - max_entries) / page_size)."""
        if not self.page_size or total <= self.max_entries:
            return 0
        return -(-(total - self.max_entries) // self.page_size)

    def current(self, total: int) -> int:
        """Entries the subscription document holds: what no page does, at most max_entries."""
        if not self.page_size:
            return min(total, self.max_entries)
        return total - self.pages(total) * self.page_size

    def span(self, total: int, number: int) -> tuple[int, int]:
        """Page `number`'s slice [start, stop) of the feed's newest-first entries."""
        if not 1 <= number <= self.pages(total):
            raise ValueError(f"a feed of {total} entries has no archive page {number}")
        return total - number * self.page_size, total - (number - 1) * self.page_size


def split(newest_first: Sequence[T], paging: Paging) -> tuple[tuple[T, ...], list[tuple[T, ...]]]:
    """The subscription document's entries and each page's (page 1 first), all newest first."""
    total = len(newest_first)
    pages = []
    for number in range(1, paging.pages(total) + 1):
        start, stop = paging.span(total, number)
        pages.append(tuple(newest_first[start:stop]))
    return tuple(newest_first[: paging.current(total)]), pages
