"""WebSub (https://www.w3.org/TR/websub/): telling hubs that a feed changed.

Every feed names the configured hubs (``rel="hub"`` in RSS and Atom, ``hubs``
in JSON Feed, and a ``Link`` header when served), so a subscriber can ask a
hub to push it new versions. When a feed's bytes change, each hub gets a
publish notification, the de-facto form hubs accept (WebSub leaves it to the
hub): ``POST <hub>`` with ``hub.mode=publish&hub.url=<feed self URL>``, one
per feed URL (`websub_post.py` sends it). Only feeds are announced (RSS, Atom and JSON Feed, not pages),
and only those whose bytes changed, so a hub fetches nothing for nothing.

Notifications go out from background threads, never from a request or
the build's own work: each hub has its own (up to four
notifications on the wire at once), so one hub that never answers delays no
other. A ``2xx`` answer is success; a timeout, a connection
error, ``408``, ``425``, ``429`` or a ``5xx`` is retried with exponential
backoff (0.5 s, 1 s, 2 s, … up to 30 s, or the hub's Retry-After when longer);
any other answer is final. Retries stop at ``websub.timeout`` seconds after
the change, and what is undelivered then is logged and dropped.

Only the process that builds notifies: `feedsvc build` after its build, and
under `feedsvc serve` (or `feedsvc build --watch`) the one builder process
after each build (`builder.py`), so a change is announced once however many
HTTP workers serve it.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from feedsvc.config import Config, base_url
from feedsvc.formats.registry import is_subscription
from feedsvc.web.websub_post import post_publish

log = logging.getLogger("feedsvc.websub")

#: Answers worth trying again: the hub is busy or briefly broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Longest wait for one hub's answer.
REQUEST_TIMEOUT = 10.0
#: Notifications on the wire at once, per hub.
CONCURRENCY = 4

#: Sends one notification: (hub URL, feed URL, timeout) → (HTTP status, Retry-After seconds or None).
Send = Callable[[str, str, float], tuple[int, float | None]]


def feed_urls(config: Config, changed_paths: Iterable[str]) -> list[str]:
    """The absolute self URLs of the feeds among `changed_paths` (URL paths), sorted, once each.

    Archive pages are left out: they name no hub, so no one subscribed to them there.
    """
    base = base_url(config)
    return sorted({base + path.lstrip("/") for path in changed_paths if is_subscription(path)})


def notify(config: Config, changed_paths: Iterable[str], *, wait: float | None = None) -> Delivery:
    """Tell every configured hub about the feeds among `changed_paths` that changed.

    `changed_paths` are URL paths ("feeds/topics/ai.atom") of documents whose
    bytes changed; pages and listings among them are skipped. Delivery runs in
    a background thread with retries until ``websub.timeout``; with `wait`,
    this call blocks up to that many seconds for it to finish (a short-lived
    process such as ``feedsvc build`` should wait, or the thread dies with it).
    Returns the `Delivery`, which says what was sent and what was given up.
    """
    delivery = Notifier(config.websub.hubs, config.websub.timeout).submit(feed_urls(config, changed_paths))
    if wait is not None:
        # Senders give up at the deadline on their own; the grace lets the one
        # racing it finish (and log) before the caller reports the delivery.
        delivery.wait(wait + _GIVE_UP_GRACE)
    return delivery


#: Seconds `notify` waits past its `wait` for senders meeting their deadline.
_GIVE_UP_GRACE = 1.0


def hub_name(hub: str) -> str:
    """A hub as logs show it: scheme, host and port only (a path or query may hold a token)."""
    parts = urlsplit(hub)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def _describe(error: BaseException) -> str:
    """An error's kind, never its message (which could quote the hub URL): the cause inside a URLError."""
    reason = getattr(error, "reason", None)
    return type(reason if isinstance(reason, BaseException) else error).__name__


class Delivery:
    """The notifications of one change: done when each is sent or given up."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pending: set[tuple[str, str]] = set(pairs)
        #: Every (hub, feed URL) pair of this change.
        self.pairs: frozenset[tuple[str, str]] = frozenset(self.pending)
        #: (hub, feed URL) pairs the hub accepted.
        self.sent: list[tuple[str, str]] = []
        #: (hub, feed URL) pairs given up: a final error, or out of time.
        self.failed: list[tuple[str, str]] = []
        #: The last error per hub (as `hub_name` shows it): "HTTP 500", "TimeoutError"…
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        if not self.pending:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done or `timeout` passes; whether it is done."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def summary(self) -> str:
        """One line for people: what was sent, and what was not and why (hubs by `hub_name`)."""
        with self._lock:
            sent = len(self.sent)
            errors = dict(self.errors)
            for hub, _url in self.pending:  # not answered (yet): the time limit came first
                errors.setdefault(hub_name(hub), "no answer in time")
        hubs = len({hub for hub, _url in self.pairs})
        feeds = len({url for _hub, url in self.pairs})
        if not self.pairs:
            return "WebSub: no feed changed, no hub notified"
        if sent == len(self.pairs):
            return f"WebSub: notified {_count(hubs, 'hub')} of {_count(feeds, 'feed')}"
        why = "; ".join(f"{hub}: {error}" for hub, error in sorted(errors.items()))
        return (
            f"WebSub: {sent} of {_count(len(self.pairs), 'notification')} delivered "
            f"({_count(hubs, 'hub')}, {_count(feeds, 'feed')}); not delivered: {why}"
        )

    def _finish(self, pair: tuple[str, str], ok: bool, error: str = "") -> None:
        with self._lock:
            if pair not in self.pending:
                return
            self.pending.discard(pair)
            (self.sent if ok else self.failed).append(pair)
            if error:
                self.errors[hub_name(pair[0])] = error
            last = not self.pending
        if last:
            # One line for the whole change, naming each hub once (a dead hub
            # must not print a line per feed), before a waiter prints more.
            if self.failed:
                log.info("%s", self.summary())
            self._done.set()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass
class _Job:
    hub: str
    url: str
    deadline: float
    due: float
    attempts: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    last_error: str = ""


@dataclass
class _Hub:
    """One hub's work: jobs by feed URL, a heap of (due, URL), senders running."""

    jobs: dict[str, _Job] = field(default_factory=dict)
    queue: list[tuple[float, str]] = field(default_factory=list)
    #: Jobs being sent now (not in `queue`), and changes announced meanwhile:
    #: URL → (deliveries, deadline), sent again once the current send ends.
    again: dict[str, tuple[list[Delivery], float]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    senders: int = 0


class Notifier:
    """Delivers publish notifications from background threads, with retries.

    Each hub has its own senders (up to `concurrency` at once), so a hub that
    is slow or never answers delays nobody else's notifications. Threads start
    when there is work and end when there is none left, and are started again
    in a forked child (threads do not survive a fork). A feed announced again
    while its notification waits is sent once, with the later deadline; one
    announced while its notification is on the wire is sent again after it,
    since the hub may have fetched the feed before it changed.
    """

    def __init__(
        self,
        hubs: Iterable[str],
        timeout: float,
        *,
        send: Send = post_publish,
        clock: Callable[[], float] = time.monotonic,
        on_outcome: Callable[[str, int], None] | None = None,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.hubs = tuple(hubs)
        self.timeout = timeout
        self.send = send
        self.clock = clock
        self.on_outcome = on_outcome
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, concurrency)
        self._hubs: dict[str, _Hub] = {hub: _Hub() for hub in self.hubs}
        self._cond = threading.Condition()
        self._pid = os.getpid()

    def submit(self, urls: Iterable[str]) -> Delivery:
        """Queue a notification of each of `urls` to every hub; returns at once."""
        urls = list(dict.fromkeys(urls))
        delivery = Delivery((hub, url) for hub in self.hubs for url in urls)
        if delivery.done:
            return delivery
        if os.getpid() != self._pid:
            # A forked child: the parent's threads are not here, and the
            # condition may have been copied while held.
            self._pid, self._cond = os.getpid(), threading.Condition()
            self._hubs = {hub: _Hub() for hub in self.hubs}
        with self._cond:
            now = self.clock()
            deadline = now + self.timeout
            for hub, url in sorted(delivery.pairs):
                state = self._hubs[hub]
                if url in state.in_flight:
                    waiting, old = state.again.get(url, ([], deadline))
                    state.again[url] = ([*waiting, delivery], max(old, deadline))
                    continue
                job = state.jobs.get(url)
                if job is None:
                    job = state.jobs[url] = _Job(hub, url, deadline, now)
                    heapq.heappush(state.queue, (job.due, url))
                job.deadline = max(job.deadline, deadline)
                job.deliveries.append(delivery)
            for hub in self.hubs:
                self._start_senders(hub)
            self._cond.notify_all()
        return delivery

    def pending(self) -> int:
        """Notifications not yet sent or given up."""
        with self._cond:
            return sum(len(h.jobs) + len(h.again) for h in self._hubs.values())

    def _start_senders(self, hub: str) -> None:
        state = self._hubs[hub]
        wanted = min(self.concurrency, len(state.jobs))
        while state.senders < wanted:
            state.senders += 1
            threading.Thread(target=self._run, args=(hub,), name="feedsvc-websub", daemon=True).start()

    def _run(self, hub: str) -> None:
        state = self._hubs[hub]
        while True:
            with self._cond:
                if self._hubs.get(hub) is not state:  # forked and reset: this state is gone
                    return
                job = self._next(state)
                if job is None:
                    state.senders -= 1
                    return
                wait = job.due - self.clock()
                if wait > 0:
                    heapq.heappush(state.queue, (job.due, job.url))
                    self._cond.wait(wait)
                    continue
                state.in_flight.add(job.url)
            self._attempt(state, job)

    @staticmethod
    def _next(state: _Hub) -> _Job | None:
        """The job due first, taken off the queue; None when the hub has nothing queued."""
        while state.queue:
            due, url = heapq.heappop(state.queue)
            job = state.jobs.get(url)
            if job is not None and job.due == due and url not in state.in_flight:
                return job
        return None

    def _attempt(self, state: _Hub, job: _Job) -> None:
        """Send `job` once, then queue it again or finish it, and tell who waits."""
        outcome, retry_after = self._send_once(job)
        with self._cond:
            outcome = self._settle(state, job, outcome, retry_after)
            self._cond.notify_all()
        self._report(job, outcome)

    def _send_once(self, job: _Job) -> tuple[bool | None, float | None]:
        """One try unless out of time: True sent, False failed for good, None try again; the hub's Retry-After."""
        remaining = job.deadline - self.clock()
        if remaining <= 0:
            job.last_error = job.last_error or "out of time"
            return False, None
        job.attempts += 1
        try:
            status, retry_after = self.send(job.hub, job.url, min(REQUEST_TIMEOUT, remaining))
        except (OSError, ValueError) as e:  # network trouble: worth another try
            job.last_error = _describe(e)
            return None, None
        if 200 <= status < 300:
            return True, retry_after
        job.last_error = f"HTTP {status}"
        return (None if status in RETRY_STATUSES else False), retry_after

    def _settle(self, state: _Hub, job: _Job, outcome: bool | None, retry_after: float | None) -> bool | None:
        """Under the lock: `job` queued again after its backoff, or taken off; the final outcome (None: queued).

        A change announced while `job` was on the wire rides along with a
        retry, or, when `job` is done, is queued as a fresh job.
        """
        state.in_flight.discard(job.url)
        if outcome is None:
            backoff = min(self.max_backoff, self.first_backoff * 2 ** (job.attempts - 1))
            job.due = self.clock() + max(backoff, min(retry_after or 0.0, self.max_backoff))
            if job.due >= job.deadline:
                outcome = False
                job.last_error += ", then out of time"
        again = state.again.pop(job.url, None)
        if outcome is None:
            if again is not None:  # it is sent again anyway, after the change
                job.deliveries += again[0]
                job.deadline = max(job.deadline, again[1])
            heapq.heappush(state.queue, (job.due, job.url))
        else:
            state.jobs.pop(job.url, None)
            if again is not None:
                fresh = state.jobs[job.url] = _Job(job.hub, job.url, again[1], self.clock(), deliveries=again[0])
                heapq.heappush(state.queue, (fresh.due, fresh.url))
        return outcome

    def _report(self, job: _Job, outcome: bool | None) -> None:
        """Log a finished job, then finish its deliveries and count it; nothing while it is queued."""
        # Log before finishing the deliveries: a waiter woken by the last one
        # prints its summary, and that must come after every line about it.
        if outcome is True:
            log.debug("websub: notified %s of %s", hub_name(job.hub), job.url)
        elif outcome is False:  # the delivery's summary says it once per hub
            log.debug(
                "websub: gave up telling %s about %s after %d attempt(s): %s",
                hub_name(job.hub), job.url, job.attempts, job.last_error,
            )  # fmt: skip
        if outcome is not None:
            for delivery in job.deliveries:
                delivery._finish((job.hub, job.url), outcome, "" if outcome else job.last_error)
        if outcome is not None and self.on_outcome is not None:
            self.on_outcome("sent" if outcome else "failed", 1)
