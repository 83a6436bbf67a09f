"""The build cache: parsed records and feed membership in SQLite.

An incremental build must find, without loading 100,000 records, which files
changed (a stamp per file), which feeds those changes touch (a membership row
per record and feed), and the newest entries of just those feeds (an index on
feed, date, id). SQLite gives all three, and its transactions mean a build that
dies half-way leaves the cache as it was before: a half-written cache is never
trusted. The cache is rebuilt from scratch whenever its fingerprint (feedsvc's
version and every setting that shapes the output) differs.

The rules are those of `feeds/rules.py`, applied row by row: duplicates of one
article (same entry id) are merged first, the most recently updated file
winning and ties going to the path that sorts first; the winner is published
when it passes the filters; entries sort newest first, ties broken by id.
"""

from __future__ import annotations

import json
import marshal
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from feedsvc.build import rows
from feedsvc.build.archive import Archives
from feedsvc.build.rows import NEWEST_FIRST, CacheDamaged, Parsed, ScanRow, Stamp, decode
from feedsvc.build.served import Manifest
from feedsvc.errors import RecordError
from feedsvc.feeds import rules
from feedsvc.feeds.rules import ALL_NAME, display_name, election_key
from feedsvc.model import Feed, FeedKey, FeedKind, FeedSummary, Record
from feedsvc.records import codec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, digest TEXT,
    rec BLOB, id TEXT, updated INTEGER, published INTEGER, selected INTEGER NOT NULL DEFAULT 0,
    best INTEGER NOT NULL DEFAULT 0, problems BLOB, rec_sum INTEGER, left_out TEXT
);
CREATE INDEX IF NOT EXISTS files_id ON files (id);
CREATE INDEX IF NOT EXISTS files_problems ON files (rel) WHERE problems IS NOT NULL;
CREATE TABLE IF NOT EXISTS members (
    feed TEXT NOT NULL, rel TEXT NOT NULL, name TEXT NOT NULL, published INTEGER NOT NULL,
    id TEXT NOT NULL, PRIMARY KEY (feed, rel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_order ON members (feed, published DESC, id);
CREATE INDEX IF NOT EXISTS members_rel ON members (rel);
CREATE TABLE IF NOT EXISTS summaries (
    feed TEXT PRIMARY KEY, name TEXT NOT NULL, total INTEGER NOT NULL, updated INTEGER
);
CREATE TABLE IF NOT EXISTS documents (
    path TEXT PRIMARY KEY, media_type TEXT NOT NULL, last_modified INTEGER, policy INTEGER NOT NULL,
    etag TEXT NOT NULL, size INTEGER NOT NULL, gz_etag TEXT, gz_size INTEGER
) WITHOUT ROWID;
"""


class Store:
    """The cache in one SQLite file; every change happens in one transaction."""

    def __init__(self, path: Path | str, fingerprint: str) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # The id and member indexes take inserts in random order: with the
        # default 2 MB of page cache a full build spends most of its time there.
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.executescript(_SCHEMA)
        self.served = Manifest(self.db)
        self.archives = Archives(self.db)
        row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        self.fresh = row is None or row[0] != fingerprint
        if self.fresh:
            with self.transaction():
                self.db.execute("DELETE FROM files")
                self.db.execute("DELETE FROM members")
                self.db.execute("DELETE FROM summaries")
                self.db.execute("DELETE FROM documents")
                self.db.execute("DELETE FROM meta WHERE key='scan'")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def stamps(self) -> dict[str, tuple[Stamp, str]]:
        """Every cached file's stamp and content digest."""
        return {
            rel: (Stamp(size, mtime, ino), digest)
            for rel, size, mtime, ino, digest in self.db.execute("SELECT rel, size, mtime_ns, ino, digest FROM files")
        }

    def digests(self, rels: Iterable[str]) -> dict[str, str]:
        """The content digest of each of `rels` the cache knows."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(rels)):
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT rel, digest FROM files WHERE rel IN ({marks})", chunk))
        return out

    def scan(self) -> list[ScanRow] | None:
        """Every file's (path, size, mtime_ns, inode) as the files table has them, or None if unknown."""
        row = self.db.execute("SELECT value FROM meta WHERE key='scan'").fetchone()
        if row is None or not isinstance(row[0], bytes):
            return None
        try:
            rows: list[ScanRow] = marshal.loads(row[0])
        except (ValueError, EOFError, TypeError):
            raise CacheDamaged("the stored scan cannot be read") from None
        if not isinstance(rows, list):
            raise CacheDamaged("the stored scan is not a list of files")
        return rows

    def set_scan(self, rows: list[ScanRow]) -> None:
        """Remember what the files table now holds, as `scan` gives it, for the next build to compare."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('scan', ?)", (marshal.dumps(rows),))

    def touch(self, rel: str, stamp: Stamp) -> None:
        """Record a new stamp for a file whose content turned out unchanged."""
        self.db.execute(
            "UPDATE files SET size=?, mtime_ns=?, ino=? WHERE rel=?", (stamp.size, stamp.mtime_ns, stamp.ino, rel)
        )

    def apply(self, parsed: Sequence[Parsed], removed: Iterable[str]) -> set[str]:
        """Store new parses and forget removed files; return the feeds whose entries may differ."""
        removed = list(removed)
        gone = [p.rel for p in parsed] + removed
        affected_ids: set[str] = set()
        affected: set[str] = set()
        for chunk in _chunks(gone):
            marks = ",".join("?" * len(chunk))
            affected.update(
                f for (f,) in self.db.execute(f"SELECT DISTINCT feed FROM members WHERE rel IN ({marks})", chunk)
            )
            affected_ids.update(
                i for (i,) in self.db.execute(f"SELECT id FROM files WHERE rel IN ({marks}) AND id IS NOT NULL", chunk)
            )
            self.db.execute(f"DELETE FROM members WHERE rel IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM files WHERE rel IN ({marks})", chunk)
        # A new record goes in as its article's file (best=1); `_elect` clears
        # the flag of those that lose, usually none, instead of setting it on all.
        self.db.executemany(
            "INSERT INTO files (rel, size, mtime_ns, ino, digest, rec, id, updated, published, selected, best,"
            " problems, rec_sum, left_out) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (p.rel, p.stamp.size, p.stamp.mtime_ns, p.stamp.ino, p.digest, p.rec, p.id, p.updated,
                 p.published, int(p.selected), int(p.id is not None), rows.encode_problems(p.problems),
                 rows.rec_sum(p.rec) if p.rec is not None else None, p.left_out)
                for p in parsed
            ],
        )  # fmt: skip
        affected_ids.update(p.id for p in parsed if p.id is not None)
        memberships = {p.rel: p for p in parsed}
        affected |= self._elect(affected_ids, memberships)
        return affected

    def _elect(self, ids: set[str], fresh: dict[str, Parsed]) -> set[str]:
        """Choose each article's file again (`best`); publish it if it passes the filters.

        `fresh` are the files just inserted (as best, with no member rows yet).
        Returns the feeds whose members changed.
        """
        rows: list[tuple[str, str, int, int, int]] = []
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(
                f"SELECT id, rel, updated, selected, best FROM files WHERE id IN ({marks})", chunk
            ).fetchall()
        flags, leaving, joining = _election(rows, fresh)
        self.db.executemany("UPDATE files SET best=? WHERE rel=?", flags)
        affected: set[str] = set()
        for chunk in _chunks(leaving):
            marks = ",".join("?" * len(chunk))
            affected.update(
                f for (f,) in self.db.execute(f"SELECT DISTINCT feed FROM members WHERE rel IN ({marks})", chunk)
            )
            self.db.execute(f"DELETE FROM members WHERE rel IN ({marks})", chunk)
        members = self._members_of(joining, fresh)
        self.db.executemany("INSERT INTO members (feed, rel, name, published, id) VALUES (?,?,?,?,?)", members)
        affected.update(m[0] for m in members)
        return affected

    def _members_of(self, rels: list[str], fresh: dict[str, Parsed]) -> list[tuple[str, str, str, int, str]]:
        """The member rows of the files `rels`, sorted by feed (each feed's index pages are written together).

        A fresh parse brings its feeds; a file already cached that becomes its
        article's choice is decoded to find them.
        """
        members: list[tuple[str, str, str, int, str]] = []
        for rel in rels:
            p = fresh.get(rel)
            if p is not None and p.id is not None and p.published is not None:
                members += [(f, rel, name, p.published, p.id) for f, name in p.feeds]
        for chunk in _chunks([rel for rel in rels if rel not in fresh]):
            marks = ",".join("?" * len(chunk))
            for rel, rec, check, id_, published in self.db.execute(
                f"SELECT rel, rec, rec_sum, id, published FROM files WHERE rel IN ({marks})", chunk
            ):
                members += [(f, rel, name, published, id_) for f, name in memberships(decode(rec, check))]
        members.sort()
        return members

    def fingerprint(self) -> str:
        """The fingerprint the cache was made with (it salts the archive page digests)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        return row[0] if row else ""

    def summarized_feeds(self) -> list[str]:
        """The feeds the cache holds a summary of: the ones that exist now."""
        return [f for (f,) in self.db.execute("SELECT feed FROM summaries")]

    def feed_keys(self) -> list[str]:
        return [f for (f,) in self.db.execute("SELECT DISTINCT feed FROM members ORDER BY feed")]

    @classmethod
    def reader(cls, path: Path | str) -> Store:
        """A read-only view of a committed cache (for render worker processes)."""
        store = cls.__new__(cls)
        store.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        store.served = Manifest(store.db)
        store.archives = Archives(store.db)
        store.fresh = False
        return store

    def feed(self, text: str, max_entries: int, pages: Sequence[str] = ()) -> Feed | None:
        """The feed as `feeds.build_feeds` would make it, from the index alone.

        It holds the newest max_entries entries; `pages` names its archive
        pages, oldest first (`Archives.plan` says which).
        """
        key = FeedKey.from_text(text)
        (total,) = self.db.execute("SELECT count(*) FROM members WHERE feed=?", (text,)).fetchone()
        if not total and key.kind is not FeedKind.ALL:
            return None
        rows = self.db.execute(
            "SELECT f.rec, f.rec_sum FROM members m JOIN files f ON f.rel = m.rel WHERE m.feed=?"
            f" ORDER BY {NEWEST_FIRST} LIMIT ?",
            (text, max_entries),
        ).fetchall()
        entries = tuple(decode(rec, check) for rec, check in rows)
        return Feed(key, self.name_of(key, text), entries, total, len(pages), tuple(pages))

    def name_of(self, key: FeedKey, text: str) -> str:
        if key.kind is FeedKind.ALL:
            return ALL_NAME
        counts = Counter(
            dict(self.db.execute("SELECT name, count(*) FROM members WHERE feed=? GROUP BY name", (text,)))
        )
        return display_name(counts)

    def summarize(self, text: str, max_entries: int) -> bool:
        """Store what the index says of a feed (as `feed` would make it); False if it is gone."""
        key = FeedKey.from_text(text)
        (total,) = self.db.execute("SELECT count(*) FROM members WHERE feed=?", (text,)).fetchone()
        if not total and key.kind is not FeedKind.ALL:
            self.db.execute("DELETE FROM summaries WHERE feed=?", (text,))
            return False
        (updated,) = self.db.execute(
            f"SELECT max(f.updated) FROM (SELECT m.rel FROM members m WHERE m.feed=? ORDER BY {NEWEST_FIRST} LIMIT ?) t"
            " JOIN files f ON f.rel = t.rel",
            (text, max_entries),
        ).fetchone()
        self.db.execute(
            "INSERT OR REPLACE INTO summaries VALUES (?,?,?,?)", (text, self.name_of(key, text), total, updated)
        )
        return True

    def pending(self) -> set[str]:
        """Feeds a build committed to the cache but may not have written out (it died)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='pending'").fetchone()
        return set(json.loads(row[0])) if row else set()

    def set_pending(self, feeds: Iterable[str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('pending', ?)", (json.dumps(sorted(feeds)),))

    def clear_pending(self) -> None:
        self.db.execute("DELETE FROM meta WHERE key='pending'")

    def summaries(self) -> list[FeedSummary]:
        """What the index and OPML list, for every feed, sorted by key."""
        rows = self.db.execute("SELECT feed, name, total, updated FROM summaries")
        out = [
            FeedSummary(FeedKey.from_text(f), name, total, codec.from_micros(u) if u is not None else None)
            for f, name, total, u in rows
        ]
        return sorted(out, key=lambda s: s.key)

    def problems(self) -> list[RecordError]:
        """Every stored problem in path order, then a warning per merged duplicate."""
        out: list[RecordError] = []
        for (blob,) in self.db.execute("SELECT problems FROM files WHERE problems IS NOT NULL ORDER BY rel"):
            out.extend(rows.decode_problems(blob))
        # Only ids given more than once can have a loser: found from the id index alone.
        dupes = self.db.execute(
            "SELECT f.rel, b.rel FROM files f JOIN files b ON b.id = f.id AND b.best = 1"
            " WHERE f.best = 0 AND f.id IN (SELECT id FROM files WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1)"
            " ORDER BY f.rel"
        )
        out.extend(RecordError.duplicate(loser, winner) for loser, winner in dupes)
        return out

    def served_totals(self) -> tuple[int, int, int, int]:
        """(records loaded, records rejected, feeds, documents) as the last build recorded them."""
        recorded = self.served.totals()
        if recorded is not None:
            return recorded
        files, rejected = self.counts()  # a cache from before the row existed
        feeds, documents = self.served.counts()
        return files - rejected, rejected, feeds, documents

    def record_totals(self) -> None:
        """Keep what /healthz shows in one row (`Manifest.record_totals`)."""
        files, rejected = self.counts()
        self.served.record_totals(files - rejected, rejected)

    def feed_name(self, text: str) -> str | None:
        """A feed's display name as its documents show it; None for a feed that does not exist."""
        row = self.db.execute("SELECT name FROM summaries WHERE feed=?", (text,)).fetchone()
        return row[0] if row else None

    def entries(self, feeds: Sequence[str], within: str | None = None) -> Iterator[Record]:
        """The entries of `feeds` (several: their union, once each), in feed order, lazily.

        `within` keeps only entries that are also in that feed. Custom feeds
        (`query.py`) are made from this, so they hold the records and order
        the build's feeds hold.
        """
        marks = ",".join("?" * len(feeds))
        sql = f"SELECT m.id, f.rec, f.rec_sum FROM members m JOIN files f ON f.rel = m.rel WHERE m.feed IN ({marks})"
        args: list[str] = list(feeds)
        if within is not None:
            sql += " AND m.rel IN (SELECT rel FROM members WHERE feed=?)"
            args.append(within)
        last = None
        for id_, rec, check in self.db.execute(f"{sql} ORDER BY {NEWEST_FIRST}", args):
            if id_ != last:  # one article in two of the feeds: adjacent, since the order ends with the id
                last = id_
                yield decode(rec, check)

    def left_out(self) -> dict[str, int]:
        """Usable records not published (each article's current file), by reason."""
        return dict(
            self.db.execute(
                "SELECT left_out, count(*) FROM files WHERE best = 1 AND left_out IS NOT NULL GROUP BY left_out"
            ).fetchall()
        )

    def total(self, text: str) -> int:
        """Entries of a feed, archives included."""
        (n,) = self.db.execute("SELECT count(*) FROM members WHERE feed=?", (text,)).fetchone()
        return int(n)

    def counts(self) -> tuple[int, int]:
        """(files known, files rejected)."""
        # A file is rejected exactly when it has no record, hence no id: the id index answers.
        files, ids = self.db.execute("SELECT count(*), count(id) FROM files").fetchone()
        return files, files - ids


def memberships(record: Record) -> tuple[tuple[str, str], ...]:
    """(feed key text, display name) for each feed `record` is in (`rules.memberships`)."""
    return tuple((key.text, name) for key, name in rules.memberships(record))


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _election(
    rows: list[tuple[str, str, int, int, int]], fresh: dict[str, Parsed]
) -> tuple[list[tuple[int, str]], list[str], list[str]]:
    """From (id, rel, updated, selected, best) of every file of some articles: what the election changes.

    Each article's choice is `election_key`'s (the rule's one home). Returns
    the new `best` flags (flag, rel) to write, the files that leave their
    feeds (their member rows go), and the chosen files that join them.
    """
    by_id: dict[str, list[tuple[str, int, int, int]]] = {}
    for id_, rel, updated, selected, best in rows:
        by_id.setdefault(id_, []).append((rel, updated, selected, best))
    flags: list[tuple[int, str]] = []
    leaving: list[str] = []
    joining: list[str] = []
    for group in by_id.values():
        chosen = min(group, key=lambda g: election_key(g[1], g[0]))[0]
        for rel, _updated, selected, best in group:
            is_best = rel == chosen
            if rel in fresh:  # inserted as best, with no member rows yet
                if not is_best:
                    flags.append((0, rel))
            elif is_best == bool(best):
                continue
            else:
                flags.append((int(is_best), rel))
                leaving.append(rel)
            if is_best and selected:
                joining.append(rel)
    return flags, leaving, joining


def _chunks(items: Sequence[str] | list[str], size: int = 500) -> Iterable[list[str]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]
