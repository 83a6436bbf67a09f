"""The server's audience store: one SQLite file beside the output folder, shared by every worker.

It sits where the build keeps its other state (`.<output_dir>.feedsvc-audience.sqlite`,
never inside the folder a web server publishes) and holds:

- ``tallies``: one `Tally` row per (minute, feed, client), merged with an
  upsert, so any number of workers (and servers over one folder) add up;
- ``skipped``: polls refused for their User-Agent, or dropped because the
  store could not take them, by minute;
- ``meta``: this install's salt, made when the file is, so a client's hash is
  the same in every worker and after a restart, and meaningless elsewhere.

Nothing older than the window is kept: each write deletes older rows first
(with ``secure_delete``, so their bytes are overwritten, not just unlinked),
and at most ``max_rows`` tallies, the oldest minutes going first. WAL mode lets
workers write while a report is read. A file that is not a database, or a
damaged one, is set aside as ``….sqlite.damaged`` and started afresh (it
holds a window of counts, nothing that cannot be counted again); any other
failure (read-only, a full disk) is the caller's to report: `StoreError`.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path

from feedsvc.config import beside_output
from feedsvc.errors import FeedsvcError
from feedsvc.web.audience.model import Tally

VERSION = 1
SALT_BYTES = 16
#: Seconds a writer waits for another worker's write to end.
BUSY_SECONDS = 2.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tallies (
    minute INTEGER NOT NULL, feed TEXT NOT NULL, client INTEGER NOT NULL,
    service TEXT, subscribers INTEGER, last INTEGER NOT NULL,
    polls INTEGER NOT NULL, not_modified INTEGER NOT NULL, conditional INTEGER NOT NULL, limited INTEGER NOT NULL,
    PRIMARY KEY (minute, feed, client)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    minute INTEGER NOT NULL, kind TEXT NOT NULL, polls INTEGER NOT NULL, PRIMARY KEY (minute, kind)
) WITHOUT ROWID;
"""
_UPSERT = """
INSERT INTO tallies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (minute, feed, client) DO UPDATE SET
    subscribers = CASE WHEN excluded.last >= last THEN excluded.subscribers ELSE subscribers END,
    last = max(last, excluded.last),
    polls = polls + excluded.polls, not_modified = not_modified + excluded.not_modified,
    conditional = conditional + excluded.conditional, limited = limited + excluded.limited
"""
_SKIP = """
INSERT INTO skipped VALUES (?, ?, ?) ON CONFLICT (minute, kind) DO UPDATE SET polls = polls + excluded.polls
"""
_HEADER = b"SQLite format 3\x00"
#: The kinds of skipped polls.
REFUSED, DROPPED = "refused", "dropped"


class StoreError(FeedsvcError):
    """The store cannot be written or read now (read-only, a full disk, locked too long)."""


def store_path(out: Path) -> Path:
    """Beside the output folder, as the build's cache and lock are (`build.incremental.default_cache_path`)."""
    return beside_output(out, "audience.sqlite")


class Store:
    """One connection to the store; not thread-safe (each worker's writer thread has its own)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.db: sqlite3.Connection | None = None
        self.identity: tuple[int, int] | None = None
        self.salt = b""

    def open(self) -> None:
        """Connect (creating the file and its salt when writing); a damaged file is set aside first.

        A file that is not a database is set aside before SQLite sees it: a
        WAL left beside it by the file it replaced would make it look like one.
        """
        if not self.readonly and not self.intact():
            self.set_aside()
        for attempt in (1, 2):
            try:
                self._connect()
                return
            except sqlite3.DatabaseError as e:
                self.close()
                if attempt == 2 or not _damaged(e) or self.readonly:
                    raise StoreError(f"{self.path}: {e}") from e
                self.set_aside()

    def _connect(self) -> None:
        """Connect, and know which file the connection has: the one at `path` before and after.

        Another worker may set the file aside and start a fresh one while this
        one connects; taking the identity after connecting would then name the
        fresh file while the connection writes into the one set aside, and
        every poll this worker counts would be lost from then on. So the file
        at `path` must be the same before and after; a file that came or went
        in between (this connect created it, or another worker replaced it)
        means connecting again.
        """
        for _attempt in range(3):
            before = self._identity_at_path()
            self._connect_once()
            after = self._identity_at_path()
            if before is not None and before == after:
                self.identity = after
                return
            self.close()
        raise StoreError(f"{self.path}: replaced again and again while connecting")

    def _identity_at_path(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _connect_once(self) -> None:
        if self.readonly:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_SECONDS, check_same_thread=False)
        else:
            db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None)
        self.db = db
        if self.readonly:
            db.execute("SELECT count(*) FROM meta").fetchone()  # not a database, or damaged: raises now
        else:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (secrets.token_bytes(SALT_BYTES),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (VERSION,))
            db.execute("COMMIT")
            (self.salt,) = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()

    def current(self) -> bool:
        """Whether the open connection is to the file now at `path` (not one replaced or set aside since)."""
        return self.db is not None and self.identity is not None and self.identity == self._identity_at_path()

    def intact(self) -> bool:
        """Whether the file still starts as an SQLite database does (or is empty, as a new one may be).

        Bytes written over the file in place go unnoticed by SQLite while the
        pages it reads are still in the WAL: the header tells at once.
        """
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                return True  # a folder or a device in the way: not ours to move; the write says what is wrong
            with open(self.path, "rb") as f:
                head = f.read(len(_HEADER))
        except OSError:
            return True
        return head in (b"", _HEADER)

    def set_aside(self) -> None:
        """Move a damaged file away (`….damaged`, replacing an older one), with its WAL and shared memory."""
        try:
            os.replace(self.path, self.path.with_name(self.path.name + ".damaged"))
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
        self.db = None

    def write(self, rows: list[Tally], skipped: Mapping[tuple[int, str], int], *, oldest: int, max_rows: int) -> None:
        """Add `rows` and `skipped` ((minute, kind) → polls), forget minutes before `oldest`, keep `max_rows`."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM tallies WHERE minute < ?", (oldest,))
            db.execute("DELETE FROM skipped WHERE minute < ?", (oldest,))
            db.executemany(
                _UPSERT,
                ((t.minute, t.feed, t.client, t.service, t.subscribers, t.last, t.polls, t.not_modified,
                  t.conditional, t.limited) for t in rows if t.minute >= oldest),
            )  # fmt: skip
            db.executemany(_SKIP, ((m, kind, n) for (m, kind), n in skipped.items() if m >= oldest))
            (count,) = db.execute("SELECT count(*) FROM tallies").fetchone()
            if count > max_rows:  # the oldest minutes go first
                db.execute(
                    "DELETE FROM tallies WHERE (minute, feed, client) IN "
                    "(SELECT minute, feed, client FROM tallies ORDER BY minute LIMIT ?)",
                    (count - max_rows,),
                )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise _error(self, e) from e

    def read(self, oldest: int) -> tuple[list[Tally], dict[str, dict[int, int]]]:
        """The tallies from minute `oldest` on, and the skipped polls by kind and minute."""
        db = self._db()
        try:
            rows = [Tally(*r) for r in db.execute("SELECT * FROM tallies WHERE minute >= ?", (oldest,))]
            skipped: dict[str, dict[int, int]] = {REFUSED: {}, DROPPED: {}}
            for minute, kind, polls in db.execute("SELECT * FROM skipped WHERE minute >= ?", (oldest,)):
                skipped.setdefault(kind, {})[minute] = polls
        except sqlite3.Error as e:
            raise _error(self, e) from e
        return rows, skipped

    def _db(self) -> sqlite3.Connection:
        if self.db is None:
            self.open()
        assert self.db is not None
        return self.db


def _damaged(e: sqlite3.DatabaseError) -> bool:
    """SQLite's "file is not a database" and "database disk image is malformed", not an I/O or access error."""
    return not isinstance(e, sqlite3.OperationalError)


def _error(store: Store, e: sqlite3.Error) -> StoreError:
    """The error to raise; a damaged file is set aside first, so the next write starts afresh.

    Only the file this connection opened: another worker may have set it
    aside already and made a new one at the same path.
    """
    damaged = isinstance(e, sqlite3.DatabaseError) and _damaged(e) and not store.readonly and store.current()
    store.close()
    if damaged:
        store.set_aside()
    return StoreError(f"{store.path}: {e}")
