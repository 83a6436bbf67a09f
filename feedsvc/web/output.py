"""The output folder as a server reads it: manifest rows from the cache, bodies from the files.

`feedsvc build` writes the files, then commits a `Served` row per document
into the cache (`served.Manifest.set`) and last rewrites the
generation file beside the output folder. A worker holds no documents: it
looks a path up in the cache (and keeps the rows it was asked for until the
next generation), then opens the file. Noticing a new build costs one stat
of the generation file per request.

Old or new, never a mix. The build replaces a file by renaming a new one over
it, so an open file keeps the bytes it had; and it commits the rows only after
every file is written. A file is taken to hold the bytes its row names when
its length matches and it is older than the commit (by a margin that covers
the file system's coarse timestamps). Any other file (a build is writing
right now, or someone touched the folder) is read and hashed, so a 200 always
carries exactly the bytes its ETag names; a file whose bytes turn out to be
the row's is remembered by its identity (inode, length, mtime) and not hashed
again.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from feedsvc.build.rows import Stamp
from feedsvc.build.served import Served, etag_of
from feedsvc.build.store import Store

#: Files written this close to the commit (or after it) are hashed before they are trusted.
MARGIN_NS = 50_000_000
#: Rows kept per process before the cache of rows starts over (bounded memory).
MAX_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class Body:
    """The bytes to send for one document: an open file (for sendfile) or bytes read and hashed."""

    etag: str
    size: int
    #: An open file positioned at 0, exactly `size` bytes long; the caller closes it.
    file: object | None = None
    data: bytes | None = None
    #: Whether the bytes are the ones the row names (else a build is under way).
    current: bool = True


@dataclass(frozen=True, slots=True)
class State:
    """What the cache says of the build being served."""

    generation: int
    published_ns: int
    records_loaded: int = 0
    records_rejected: int = 0
    feeds: int = 0
    documents: int = 0


class Output:
    """One output folder and its cache, read by any number of threads."""

    def __init__(self, out: Path, cache: Path, generation_file: Path) -> None:
        self.out = out
        self.cache = cache
        self.generation_file = generation_file
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stamp: Stamp | None = None
        self._rows: dict[str, Served] = {}
        #: Files read and found to hold their row's bytes: name → (stamp, ETag), for the next request.
        self._verified: dict[str, tuple[Stamp, str]] = {}
        #: The cache file's (device, inode) when last looked at: a new one means reopen.
        self._cache_id: tuple[int, int] | None = None
        self.state = State(0, 0)
        #: Called with the new `State` whenever a new build is noticed.
        self.listeners: list = []
        self.check()

    def db(self) -> Store:
        """This thread's read-only connection to the cache (SQLite connections are per thread).

        Reopened when the cache file was replaced (a full build, a damaged
        cache set aside): an open connection would go on reading the old one.
        """
        store: Store | None = getattr(self._local, "store", None)
        if store is None or self._local.cache_id != self._cache_id:
            if store is not None:
                store.close()
            store = self._local.store = Store.reader(self.cache)
            self._local.cache_id = self._cache_id
        return store

    def check(self) -> State:
        """Notice a newer build (one stat); returns the state being served."""
        try:
            stamp: Stamp | None = Stamp.of(os.stat(self.generation_file))
        except OSError:
            stamp = None
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(stamp)
        return self.state

    def _reload(self, stamp: Stamp | None) -> None:
        try:
            st = os.stat(self.cache)
        except OSError:
            self._stamp, self.state, self._rows = stamp, State(0, 0), {}
            return
        self._cache_id = (st.st_dev, st.st_ino)
        db = self.db()
        generation, published_ns = db.served.state()
        loaded, rejected, feeds, documents = db.served_totals()
        # A new dict, not a cleared one: threads holding the old one finish with it.
        # (`_verified` stays: an identity and its hash hold across builds.)
        self._rows = {}
        self.state = State(generation, published_ns, loaded, rejected, feeds, documents)
        self._stamp = stamp
        for listener in list(self.listeners):
            listener(self.state)

    def get(self, path: str) -> Served | None:
        """The row of the document at URL path `path`, or None."""
        rows = self._rows
        row = rows.get(path)
        if row is None and self.state.generation:
            row = self.db().served.document(path)
            if row is not None:
                if len(rows) >= MAX_ROWS:
                    rows = self._rows = {}
                rows[path] = row
        return row

    def reread(self, path: str) -> Served | None:
        """The row as the cache has it now, past the rows kept (a build committed, its signal is due)."""
        row = self.db().served.document(path)
        if row is not None:
            self._rows[path] = row
        return row

    def body(self, row: Served, gz: bool, state: State) -> Body | None:
        """The bytes of `row` (its ``.gz`` with `gz`); None if the file is gone.

        `state` is what `check` said before `row` was looked up: a file is
        trusted only if it is older than that build, never a newer one (whose
        files may already be in place under an older row).
        """
        name = row.path + ".gz" if gz else row.path
        etag = (row.gz_etag if gz else row.etag) or ""
        size = (row.gz_size if gz else row.size) or 0
        try:
            # O_NOFOLLOW: a symbolic link planted where a document belongs is never followed.
            fd = os.open(os.path.join(self.out, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        f = os.fdopen(fd, "rb")
        try:
            st = os.fstat(fd)
            stamp = Stamp.of(st)
            if st.st_size == size and st.st_mtime_ns < state.published_ns - MARGIN_NS:
                return Body(etag, size, file=f)
            known = self._verified.get(name)
            if known == (stamp, etag):
                return Body(etag, size, file=f)
            data = f.read()
        except BaseException:
            f.close()
            raise
        f.close()
        actual = etag_of(data)
        if actual == etag and len(data) == size:
            if len(self._verified) < MAX_ROWS:
                self._verified[name] = (stamp, etag)
            return Body(etag, size, data=data)
        return Body(actual, len(data), data=data, current=False)
