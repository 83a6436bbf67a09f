"""Recording polls in the running server: counted in memory per worker, written from a background thread.

A request pays for one dictionary update under an uncontended lock
(`Pending.add`): no hashing, no User-Agent parsing, no I/O, and nothing that
can raise into it (`note` swallows everything). Every `audience.flush_seconds`
a thread of the worker takes what was counted, folds it (`tally.fold`: the
User-Agents read, the clients hashed with the store's salt) and adds it to
the store in one transaction. Until then a worker holds at most
`MAX_PENDING` distinct (minute, feed, address, User-Agent) keys, each with a
User-Agent cut to just over `agents.MAX_AGENT` (one that long is refused
anyway), so memory is bounded whatever clients send; polls beyond that are
counted as dropped.

A store that cannot be written (read-only, a full disk, locked too long)
costs the polls of that write, which are counted as dropped and written as
such once it can be; the problem is logged once, and again when it is over.
A damaged or replaced file is set aside and started afresh (`store.py`).
Workers are forked after the app is made, so each starts its own thread on
its first poll, and writes what it holds when it exits normally.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedsvc.config import Config
from feedsvc.web.audience import agents
from feedsvc.web.audience.agents import MAX_AGENT
from feedsvc.web.audience.model import Report, Tally
from feedsvc.web.audience.report import compute
from feedsvc.web.audience.store import DROPPED, REFUSED, Store, StoreError, store_path
from feedsvc.web.audience.tally import POLL_METHODS, POLL_STATUSES, Pending, fold, is_feed
from feedsvc.web.polite import MAX_FORWARDED, AddressSet, client_address, networks

log = logging.getLogger("feedsvc.audience")

#: Keys a worker holds between two writes (each at most a few KB).
MAX_PENDING = 10_000


class Recorder:
    """One worker's counts of the polls it answered, and the report of every worker's."""

    def __init__(self, config: Config, out: Path, *, clock: Callable[[], float] = time.time) -> None:
        audience = config.audience
        self.path = store_path(out)
        self.polite = config.polite
        self.window = int(audience.window_hours * 3600)
        self.flush_seconds = audience.flush_seconds
        self.max_rows = audience.max_rows
        self.clock = clock
        trusted = AddressSet(networks(config.polite.trusted_proxies))
        #: X-Forwarded-For is kept (and believed) only from a trusted proxy, as polite polling does.
        self.trusting = bool(trusted.networks)
        self._address = lambda remote, forwarded: client_address(remote, forwarded, trusted)
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_reset"))

    def _reset(self) -> None:
        """A fresh state: at start, and in a forked worker (a lock or thread of the parent is no use there)."""
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._pending = Pending(MAX_PENDING)
        #: minute → polls a failed write could not keep: written as dropped with the next one that works.
        self._lost: dict[int, int] = {}
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._problem: str | None = None

    def note(self, environ: dict[str, Any], code: int) -> None:
        """Count one answer (status `code`) to a request for a feed; never raises."""
        if code not in POLL_STATUSES:
            return
        try:
            path = environ["PATH_INFO"]
            if environ["REQUEST_METHOD"] not in POLL_METHODS or not is_feed(path):
                return
            with self._lock:
                self._pending.add(
                    int(self.clock()),
                    path,
                    environ.get("REMOTE_ADDR") or "-",
                    environ.get("HTTP_X_FORWARDED_FOR", "")[: MAX_FORWARDED + 1] or None if self.trusting else None,
                    environ.get("HTTP_USER_AGENT", "")[: MAX_AGENT + 1],  # longer is refused anyway
                    code,
                    "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ,
                )
            if self._thread is None:
                self._start()
        except Exception:  # noqa: BLE001 - counting must never fail a request
            pass

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="feedsvc-audience", daemon=True)
            self._thread.start()
        # A worker leaving normally writes what it holds (multiprocessing runs these, atexit does not).
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        """Stop the writer thread and write what is held."""
        self._stop.set()
        self.flush()
        if self._store is not None:
            self._store.close()

    def flush(self) -> None:
        """Write what this worker counted since the last write; never raises."""
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, Pending(MAX_PENDING)
            if not pending.counts and not pending.dropped and not self._lost:
                return
            oldest = (int(self.clock()) - self.window) // 60
            try:
                store = self._open()
                folded = fold(pending, store.salt, agents.shipped(), address=self._address)
                skipped = {(minute, REFUSED): n for minute, n in folded.refused.items()}
                for minute, n in (*pending.dropped.items(), *self._lost.items()):
                    skipped[minute, DROPPED] = skipped.get((minute, DROPPED), 0) + n
                store.write(folded.rows, skipped, oldest=oldest, max_rows=self.max_rows)
            except Exception as e:  # noqa: BLE001 - a broken store must never stop the counting
                self._lose(pending, oldest)
                self._say(f"{type(e).__name__}: {e}" if not isinstance(e, StoreError) else str(e))
                return
            self._lost.clear()
            if self._problem is not None:
                log.info("audience: writing %s again", self.path)
                self._problem = None

    def _open(self) -> Store:
        """The store, opened again if the file was replaced, set aside or overwritten since the last write."""
        store = self._store
        if store is not None and store.current() and store.intact():
            return store
        if store is not None:
            overwritten = store.current()  # the file is still ours, but not a database any more
            store.close()
            if overwritten:
                store.set_aside()
        self._store = None
        store = Store(self.path)
        store.open()
        self._store = store
        return store

    def _lose(self, pending: Pending, oldest: int) -> None:
        lost = self._lost
        for (minute, *_), counts in pending.counts.items():
            lost[minute] = lost.get(minute, 0) + counts[0]
        for minute, n in pending.dropped.items():
            lost[minute] = lost.get(minute, 0) + n
        for minute in [m for m in lost if m < oldest]:
            del lost[minute]

    def _say(self, problem: str) -> None:
        if problem != self._problem:
            log.warning(
                "audience: cannot write %s (%s); polls are counted as dropped until it can be", self.path, problem
            )
            self._problem = problem

    def report(self) -> tuple[Report, str | None]:
        """The report of what every worker wrote to the store, and why it is empty when it cannot be read."""
        now = int(self.clock())
        oldest = (now - self.window) // 60
        rows: list[Tally] = []
        skipped: dict[str, dict[int, int]] = {REFUSED: {}, DROPPED: {}}
        problem = None
        # The store and this worker's lost polls are read with no write between them: a write
        # moves the lost polls into the store, and a report seeing both would count them twice.
        with self._writing:
            if self.path.exists():
                store = Store(self.path, readonly=True)
                try:
                    rows, skipped = store.read(oldest)
                except StoreError as e:
                    problem = str(e)
                finally:
                    store.close()
            lost = dict(self._lost)
        dropped = dict(skipped.get(DROPPED, {}))
        for minute, n in lost.items():
            dropped[minute] = dropped.get(minute, 0) + n
        report = compute(
            rows, source="server", end=now, window_seconds=self.window, polite=self.polite,
            refused=skipped.get(REFUSED), dropped=dropped,
        )  # fmt: skip
        return report, problem


def _call(ref: weakref.ref[Recorder], name: str) -> None:
    recorder = ref()
    if recorder is not None:
        getattr(recorder, name)()
