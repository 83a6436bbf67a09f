"""The cache's record of each feed's archive pages: which pages a build must render
(their entries or their links changed), which are gone, and each page's entries.

A page is rendered again only when the digests of its record files or its
neighbours' names change, so a one-record change rewrites the page that holds
it and at most one beside it (docs/design.md, "Archive pages").
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from feedsvc.build.rows import FROM_ENTRY, NEWEST_FIRST, decode
from feedsvc.feeds.archives import Paging, layout
from feedsvc.model import ArchivePage, FeedKey, Record

# --- Archive pages (RFC 5005; see archives.py) ---------------------------------
#
# A touched feed is laid out again (`archives.layout`, over its archived
# members' ids and dates: one indexed query) and re-renders only the pages
# whose digest changed. A page's digest covers the settings, the feed's name,
# the page's name, its neighbours' names (its prev-archive and next-archive
# links) and the content digest of every record file on it, in order; it is
# kept per feed and page name. A build stages the digests of the pages it
# renders (or '-' for a page that is gone) and they count only once its files
# are written: the trigger promotes them when the build clears its pending
# mark (`Store.clear_pending`). A build that dies before that leaves the old
# digests, and its pending feeds, so the next build renders those pages again.
# The digests outlive a cache made fresh (a changed setting), so the pages of
# the old layout are removed from the output folder.

_ARCHIVE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS archive_digests (
        feed TEXT NOT NULL, page TEXT NOT NULL, digest TEXT, staged TEXT, PRIMARY KEY (feed, page)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS archive_digests_written AFTER DELETE ON meta WHEN old.key = 'pending'
    BEGIN
        DELETE FROM archive_digests WHERE staged = '-';
        UPDATE archive_digests SET digest = staged, staged = NULL WHERE staged IS NOT NULL;
    END""",
)


@dataclass(frozen=True, slots=True)
class PageRef:
    """One archive page to render: its name, its neighbours and where its entries are."""

    name: str
    prev: str | None
    next: str | None
    #: [lo, hi) of the page's entries in the feed's newest-first order.
    lo: int
    hi: int
    #: Its newest entry's (published, id): where a query for its entries starts.
    newest: tuple[int, str]


@dataclass(frozen=True, slots=True)
class PagePlan:
    """What a build does with one feed's archive pages."""

    #: Pages to render (new, or their entries or links changed), newest first.
    render: tuple[PageRef, ...]
    #: Names of pages that are gone (the feed shrank, a boundary went, the feed is gone).
    gone: tuple[str, ...]
    #: Every page's name, oldest first (`Feed.pages`).
    names: tuple[str, ...]
    #: The feed's display name ("" when it has no pages).
    name: str = ""


#: Records `Archives.pages` keeps decoded. A record is on a page of every feed
#: it is in (about eight), and pages are rendered newest first across feeds, so
#: those pages ask for it close together: at 100,000 records with config.yaml
#: decoding was a sixth of a render process's time.
RECORDS_KEPT = 8192


class Archives:
    """The cache's record of archive pages (``archive_digests``), on its `Store`'s connection (`Store.archives`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        #: `rows.decode`, its answers kept by its arguments (the cached bytes and
        #: their checksum): the same bytes always decode to the same record, so
        #: nothing kept can be stale, and a refusal (it raises) is never kept.
        self._decode: Callable[[bytes, int | None], Record] = functools.lru_cache(maxsize=RECORDS_KEPT)(decode)

    def use_page_size(self, page_size: int) -> None:
        """Make the cache ready for archive pages averaging `page_size` entries (0: archives off).

        A cache from before content-defined pages kept numbered pages in
        ``archive_pages``: their names carry over (with no digest), so the next
        build removes their files. The size is part of the fingerprint, so
        changing it lays every feed out again. Call inside `Store.transaction()`.
        """
        db = self.db
        for statement in _ARCHIVE_SCHEMA:
            db.execute(statement)
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='archive_pages'").fetchone():
            db.execute(
                "INSERT OR IGNORE INTO archive_digests (feed, page) SELECT feed, CAST(page AS TEXT) FROM archive_pages"
            )
            db.execute("DROP TRIGGER IF EXISTS archive_pages_written")
            db.execute("DROP TABLE archive_pages")
        row = db.execute("SELECT value FROM meta WHERE key='page_size'").fetchone()
        if row is None or row[0] != str(page_size):
            db.execute("INSERT OR REPLACE INTO meta VALUES ('page_size', ?)", (str(page_size),))

    def plan(
        self, text: str, name_of: Callable[[], str], paging: Paging, salt: str, *, everything: bool = False
    ) -> PagePlan:
        """Lay the feed out (`archives.layout`), compare with the stored digests, stage the new ones.

        `name_of` gives the feed's display name, asked only when the feed has
        pages (a feed that is gone has none, and no name). Call inside
        `Store.transaction()`. `salt` is mixed into every digest (the cache's
        fingerprint: settings that change every page). `everything` renders
        every page (an output folder without a manifest).
        """
        db = self.db
        old = dict(db.execute("SELECT page, digest FROM archive_digests WHERE feed=?", (text,)).fetchall())
        if old:
            db.execute("UPDATE archive_digests SET staged=NULL WHERE feed=? AND staged IS NOT NULL", (text,))
        rows: list[tuple[str, int, str]] = []
        if paging.page_size:
            rows = db.execute(
                "SELECT m.id, m.published, f.digest FROM members m JOIN files f ON f.rel = m.rel WHERE m.feed=?"
                f" ORDER BY {NEWEST_FIRST} LIMIT -1 OFFSET ?",
                (text, paging.max_entries),
            ).fetchall()
            rows.reverse()  # oldest first
        spans = layout([(id_, published) for id_, published, _digest in rows], paging)
        name = name_of() if spans else ""
        archived, current = len(rows), paging.max_entries
        render: list[PageRef] = []
        staged: list[tuple[str, str, str]] = []
        for span in spans:
            h = hashlib.sha256(f"{salt}\0{name}\0{span.name}\0{span.prev or ''}\0{span.next or ''}".encode())
            for _id, _published, digest in rows[span.start : span.stop]:
                h.update(b"\0" + digest.encode("ascii"))
            digest = h.hexdigest()
            if everything or old.get(span.name) != digest:
                lo = current + archived - span.stop
                newest_id, newest_published, _digest = rows[span.stop - 1]
                render.append(
                    PageRef(
                        span.name, span.prev, span.next, lo, lo + span.stop - span.start, (newest_published, newest_id)
                    )
                )
                staged.append((text, span.name, digest))
        names = tuple(span.name for span in spans)
        gone = tuple(sorted(old.keys() - set(names)))
        self._stage(staged + [(text, page, "-") for page in gone])
        render.sort(key=lambda ref: ref.lo)
        return PagePlan(tuple(render), gone, names, name)

    def _stage(self, digests: list[tuple[str, str, str]]) -> None:
        """Stage (feed, page, digest) rows ('-': the page is gone); they count once the build's files are written."""
        self.db.executemany(
            "INSERT INTO archive_digests (feed, page, staged) VALUES (?,?,?)"
            " ON CONFLICT (feed, page) DO UPDATE SET staged=excluded.staged",
            digests,
        )

    def feeds(self) -> set[str]:
        """Every feed the cache knows archive pages of (written, or staged by a build that died)."""
        return {f for (f,) in self.db.execute("SELECT DISTINCT feed FROM archive_digests")}

    def pages(self, text: str, name: str, refs: Sequence[PageRef]) -> list[ArchivePage]:
        """The pages `refs` (adjacent, newest first) of the feed named `name`, read in one query."""
        if not refs:
            return []
        key = FeedKey.from_text(text)
        first, last = refs[0].lo, refs[-1].hi
        published, id_ = refs[0].newest
        rows = self.db.execute(
            "SELECT f.rec, f.rec_sum FROM members m JOIN files f ON f.rel = m.rel"
            f" WHERE m.feed=? AND {FROM_ENTRY} ORDER BY {NEWEST_FIRST} LIMIT ?",
            (text, published, published, id_, last - first),
        ).fetchall()
        records = [self._decode(rec, check) for rec, check in rows]
        return [
            ArchivePage(key, name, ref.name, tuple(records[ref.lo - first : ref.hi - first]), ref.prev, ref.next)
            for ref in refs
        ]
