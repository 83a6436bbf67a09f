"""Live reload: the served site as one immutable snapshot, rebuilt when records change.

`LiveSite` keeps the current `Snapshot` in a single attribute. A reload scans
``records_dir``, re-parses only the files whose (size, mtime_ns, inode) changed,
lets `site.assemble` re-render only the feeds those records touch, and swaps
the new snapshot in with one reference assignment. A request reads the
attribute once and uses that snapshot to the end, so it sees the old site or
the new one, never a mix, and never waits for a reload.

Each served document is prepared once, when it is rendered: its plain and
gzip bodies and their strong ETags (hashes of the bytes sent), and its
Last-Modified as an HTTP date. A document whose bytes did not change keeps its
prepared form, so its ETag, Last-Modified and gzip bytes stay the same across
reloads, in every worker process and after a restart: they come from bytes
and record dates only, never from the clock or the process.

Nothing here knows about HTTP requests or Flask; `web.py` does.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

from .config import Config
from .errors import RecordError
from . import compress, incremental
from .records import Loaded, collect, settings_for
from .site import Build, Document, PageSlot, assemble

log = logging.getLogger("feedsvc.reload")

#: What identifies a file's content without reading it: (size, mtime_ns, inode).
Signature = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Variant:
    """One encoding of a document, exactly as it goes on the wire."""

    body: bytes
    #: Strong entity tag, quoted: a hash of `body`, so it differs between encodings.
    etag: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document with everything a response needs, computed once."""

    document: Document
    plain: Variant
    #: None when gzip would not make the body smaller.
    gzip: Variant | None
    #: Last-Modified as an HTTP date; None when the document has no date.
    last_modified: str | None
    #: The same instant in whole seconds since the epoch, for If-Modified-Since.
    last_modified_epoch: int | None


def etag_of(body: bytes) -> str:
    """The strong ETag of `body`: 128 bits of its SHA-256, quoted."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def prepare(doc: Document, previous: Prepared | None = None, *, level: int = compress.LEVEL) -> Prepared:
    """`doc` ready to serve; reuses `previous` when the document is the same.

    `level` is the gzip level: custom feeds, made on request, use a faster one.
    """
    if previous is not None and (
        previous.document is doc
        or (
            previous.document.body == doc.body
            and previous.document.media_type == doc.media_type
            and previous.document.last_modified == doc.last_modified
            and previous.document.immutable == doc.immutable
        )
    ):
        return previous
    plain = Variant(doc.body, etag_of(doc.body))
    # The same bytes as the static build's .gz file (and so the same ETag).
    packed = compress.gzip_body(doc.body, level)
    zipped = Variant(packed, etag_of(packed)) if packed is not None else None
    when = doc.last_modified
    return Prepared(
        document=doc,
        plain=plain,
        gzip=zipped,
        last_modified=format_datetime(when, usegmt=True) if when else None,
        last_modified_epoch=int(when.timestamp()) if when else None,
    )


def _settle() -> None:
    """Take everything alive now out of the cyclic garbage collector's sight.

    A snapshot of 100,000 records is millions of objects, and CPython's
    collector walks all of them in every full collection, which the scanner's
    allocations trigger every few seconds: requests then stall for up to a
    second or two (p99 latency). Records and documents hold no reference
    cycles, so they are freed by reference counting when a later snapshot
    replaces them, frozen or not; `gc.freeze` only spares the walk. The
    collection first frees the cyclic garbage made since the last freeze
    (it walks only those objects), so none is frozen for good.
    """
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class FileState:
    signature: Signature
    loaded: Loaded


class ServedDocuments(Mapping[str, Prepared]):
    """URL path → prepared document; archive pages are rendered and prepared on first use.

    `eager` holds every document prepared when the snapshot was made; `lazy`
    the archive page documents (see `site.PageSlot`), made once and kept by
    their slot, which later snapshots share while the page is unchanged.
    """

    def __init__(self, eager: dict[str, Prepared], lazy: Mapping[str, tuple[PageSlot, int]]) -> None:
        self.eager = eager
        self.lazy = lazy

    def __getitem__(self, path: str) -> Prepared:
        found = self.eager.get(path)
        if found is not None:
            return found
        slot, index = self.lazy[path]
        prepared = slot.derived("prepared", lambda docs: tuple(prepare(doc) for doc in docs))
        return prepared[index]  # type: ignore[index]

    def __contains__(self, path: object) -> bool:
        return path in self.eager or path in self.lazy

    def __iter__(self) -> Iterator[str]:
        yield from self.eager
        yield from self.lazy

    def __len__(self) -> int:
        return len(self.eager) + len(self.lazy)

    def changed_since(self, old: ServedDocuments) -> list[str]:
        """Paths that are new or whose bytes may differ from `old`'s (without rendering pages)."""
        changed = [path for path, prep in self.eager.items() if old.eager.get(path) is not prep]
        changed += [path for path, (slot, _i) in self.lazy.items() if old.lazy.get(path, (None, 0))[0] is not slot]
        return changed


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the served site; never changed once made."""

    build: Build
    #: URL path (no leading slash) → prepared document.
    documents: ServedDocuments
    #: Record file (relative path) → its signature and what loading it gave.
    files: Mapping[str, FileState]
    #: Wall-clock time (seconds since the epoch) this snapshot was made; for
    #: /healthz only, it never reaches a feed.
    made_at: float
    #: 1 for the first snapshot, +1 for each swap.
    generation: int

    @property
    def records_loaded(self) -> int:
        return len(self.build.loaded.records)

    @property
    def records_rejected(self) -> int:
        return self.build.loaded.files - len(self.build.loaded.records)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one scan found and did."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: Files read and parsed in this scan (added + changed).
    parsed: int = 0
    #: Feeds rendered in this scan (feeds whose entries changed).
    rendered: int = 0
    #: Whether a new snapshot was swapped in.
    swapped: bool = False
    seconds: float = 0.0
    #: URL paths of documents that are new or whose bytes changed, sorted.
    changed_documents: tuple[str, ...] = ()
    #: URL paths of documents no longer served, sorted.
    removed_documents: tuple[str, ...] = ()
    #: Whether the scan failed (the previous snapshot is still served).
    failed: bool = False

    @property
    def any_change(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass
class _Scan:
    files: dict[str, FileState] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    fresh: list[Loaded] = field(default_factory=list)


class LiveSite:
    """The site as served: a snapshot, and the machinery that keeps it current.

    Make one per app. `reload_now()` scans once, synchronously; `ensure_running()`
    starts the background scanner in the calling process if it is not already
    running there (gunicorn forks workers after the app is made, and threads do
    not survive a fork, so each worker starts its own from gunicorn's
    post_worker_init hook, or on its first request).
    """

    def __init__(
        self, config: Config, *, background: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        #: Whether `ensure_running` starts the scanner (off: only `reload_now` reloads).
        self.background = background
        self.interval = config.server.reload_interval
        self._root = Path(config.records_dir)
        self._settings = settings_for(config)
        self._clock = clock
        #: Called with each scan's report, in the scanning thread, after the
        #: swap (metrics, WebSub). Keep them quick; an exception is logged.
        self.listeners: list[Callable[[ReloadReport], None]] = []
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._owner_pid = os.getpid()
        self._stop = threading.Event()
        started = time.monotonic()
        scan = self._scan({})
        build = assemble(collect(scan.fresh), config, lazy_pages=True)
        documents = ServedDocuments({path: prepare(doc) for path, doc in build.documents.items()}, build.lazy)
        #: The current snapshot: read it once per request, never lock it.
        self.snapshot = Snapshot(build, documents, scan.files, clock(), 1)
        _settle()
        #: Wall-clock time of the last scan, whether or not it changed anything.
        self.last_scan = self.snapshot.made_at
        for problem in build.problems:
            _log_problem(problem)
        log.info(
            "loaded %d record files: %d usable, %d rejected; %d feeds, %d documents in %.2fs",
            build.loaded.files,
            self.snapshot.records_loaded,
            self.snapshot.records_rejected,
            len(build.feeds),
            len(documents),
            time.monotonic() - started,
        )

    # -- scanning ------------------------------------------------------------

    def reload_now(self) -> ReloadReport:
        """Scan records_dir once and swap in a new snapshot if anything changed.

        Then tell the listeners, outside the lock (a failed scan is reported
        to them too, and raised).
        """
        started = time.monotonic()
        try:
            with self._lock:
                report = self._reload()
        except Exception:
            self._tell(ReloadReport(failed=True, seconds=time.monotonic() - started))
            raise
        self._tell(report)
        return report

    def _tell(self, report: ReloadReport) -> None:
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception as e:  # noqa: BLE001 - a listener must not stop reloads
                log.error("reload listener failed (%s)", type(e).__name__)
                log.debug("reload listener failure", exc_info=True)

    def _reload(self) -> ReloadReport:
        started = time.monotonic()
        current = self.snapshot
        if not self._root.is_dir():
            # A folder that vanished (unmounted, being replaced) is more likely
            # a hiccup than a wish to unpublish everything: keep serving.
            log.warning("records_dir %s is missing; still serving the previous records", self._root)
            self.last_scan = self._clock()
            return ReloadReport(seconds=time.monotonic() - started)
        scan = self._scan(current.files)
        self.last_scan = self._clock()
        if not (scan.added or scan.changed or scan.removed):
            return ReloadReport(seconds=time.monotonic() - started)
        loaded = collect(state.loaded for state in scan.files.values())
        build = assemble(loaded, self.config, current.build, lazy_pages=True)
        old = current.documents
        documents = ServedDocuments(
            {path: prepare(doc, old.eager.get(path)) for path, doc in build.documents.items()}, build.lazy
        )
        rendered = sum(1 for f in build.cache if f not in current.build.cache)
        changed = tuple(sorted(documents.changed_since(old)))
        removed = tuple(sorted(set(old) - set(documents)))
        for outcome in scan.fresh:
            for problem in outcome.problems:
                _log_problem(problem)
        known = set(current.build.selection_problems)
        for problem in build.selection_problems:
            if problem not in known:
                _log_problem(problem)
        self.snapshot = Snapshot(build, documents, scan.files, self.last_scan, current.generation + 1)
        _settle()
        report = ReloadReport(
            added=tuple(scan.added),
            changed=tuple(scan.changed),
            removed=tuple(scan.removed),
            parsed=len(scan.fresh),
            rendered=rendered,
            swapped=True,
            seconds=time.monotonic() - started,
            changed_documents=changed,
            removed_documents=removed,
        )
        log.info(
            "reloaded: %d added, %d changed, %d removed; %d feeds rendered; "
            "%d usable records, %d rejected, %d feeds in %.2fs",
            len(report.added),
            len(report.changed),
            len(report.removed),
            report.rendered,
            self.snapshot.records_loaded,
            self.snapshot.records_rejected,
            len(build.feeds),
            report.seconds,
        )
        return report

    def _scan(self, previous: Mapping[str, FileState]) -> _Scan:
        """Every record file in path order, parsing only new and changed ones.

        Many files to parse (the first load of a big folder) are parsed across
        processes; `load_many` falls back to this thread where forking is unsafe.
        """
        scan = _Scan()
        todo: list[tuple[str, Signature, FileState | None]] = []
        for rel, stamp in incremental.scan(self._root).items():
            # The signature is taken before reading: a write racing the read
            # changes the signature again, so the next scan reads the file again.
            signature = (stamp.size, stamp.mtime_ns, stamp.ino)
            before = previous.get(rel)
            if before is not None and before.signature == signature:
                scan.files[rel] = before
            else:
                todo.append((rel, signature, before))
        fresh = incremental.load_many(self._root, [rel for rel, _, _ in todo], self._settings, incremental.cores())
        for (rel, signature, before), loaded in zip(todo, fresh):
            scan.files[rel] = FileState(signature, loaded)
            scan.fresh.append(loaded)
            (scan.changed if before is not None else scan.added).append(rel)
        if todo:  # keep path order: changed files were appended after unchanged ones
            scan.files = dict(sorted(scan.files.items()))
        scan.removed = sorted(previous.keys() - scan.files.keys())
        for rel in scan.removed:
            log.info("%s: removed", rel)
        return scan

    # -- the background scanner ---------------------------------------------

    def ensure_running(self) -> None:
        """Start the background scanner in this process unless it runs already.

        Cheap enough to call on every request: one comparison when running.
        """
        if self._thread_pid == os.getpid() or not self.background:
            return
        with self._start_lock:
            pid = os.getpid()
            if self._thread_pid == pid:
                return
            if self._owner_pid != pid:
                # After a fork the parent's threads are gone and a lock may
                # have been copied while held: this process gets a fresh one.
                self._lock = threading.Lock()
                self._owner_pid = pid
            self._stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(self._stop,), name="feedsvc-reload", daemon=True
            )
            thread.start()
            self._thread, self._thread_pid = thread, pid

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background scanner (tests; a daemon thread needs no stopping)."""
        with self._start_lock:
            self._stop.set()
            thread, self._thread, self._thread_pid = self._thread, None, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._thread_pid == os.getpid()

    def _run(self, stop: threading.Event) -> None:
        # Scan at once, then every interval: a worker forked long after the
        # app was made (a gunicorn restart) catches up before it falls behind.
        while not stop.is_set():
            try:
                self.reload_now()
            except Exception as e:  # noqa: BLE001 - a bad scan must not end the scanner
                # The type only: a message could quote record data.
                log.error("reload failed (%s); still serving the previous records", type(e).__name__)
                log.debug("reload failure", exc_info=True)
            stop.wait(self.interval)


def _log_problem(problem: RecordError) -> None:
    # A RecordError renders as "file:line: field: reason" and never holds a
    # record's values, so it is safe to log as is. Warnings (something dropped
    # from a published record) are for `feedsvc check`, not the server log.
    log.log(logging.DEBUG if problem.is_warning else logging.WARNING, "%s", problem)
