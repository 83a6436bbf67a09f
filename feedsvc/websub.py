"""WebSub (https://www.w3.org/TR/websub/): telling hubs that a feed changed.

Every feed names the configured hubs (``rel="hub"`` in RSS and Atom, ``hubs``
in JSON Feed, and a ``Link`` header when served), so a subscriber can ask a
hub to push it new versions. When a feed's bytes change, each hub gets a
publish notification, the de-facto form hubs accept (WebSub leaves it to the
hub): ``POST <hub>`` with ``hub.mode=publish&hub.url=<feed self URL>``, one
per feed URL. Only feeds are announced (RSS, Atom and JSON Feed, not pages),
and only those whose bytes changed, so a hub fetches nothing for nothing.

Notifications go out from one background thread per process, never from a
request or a reload: a ``2xx`` answer is success; a timeout, a connection
error, ``408``, ``425``, ``429`` or a ``5xx`` is retried with exponential
backoff (0.5 s, 1 s, 2 s, … up to 30 s, or the hub's Retry-After when longer);
any other answer is final. Retries stop at ``websub.timeout`` seconds after
the change, and what is undelivered then is logged and dropped.

Under gunicorn every worker reloads on its own and sees the same changes.
Exactly one of them notifies: the one holding an exclusive lock on a file in
the runtime folder `feedsvc serve` creates (``FEEDSVC_RUNTIME_DIR``). The
first worker to have something to announce takes the lock and keeps it until
it exits, when the kernel releases it and the next worker with news takes it
over. A worker started later than the others may announce a change again
(hubs treat a repeated notification as harmless). Without a runtime folder
(plain gunicorn, the development server) every process notifies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from . import __version__
from .config import Config, base_url

log = logging.getLogger("feedsvc.websub")

#: Set by `feedsvc serve`: a private folder shared by its worker processes.
RUNTIME_ENV = "FEEDSVC_RUNTIME_DIR"
LOCK_NAME = "websub.lock"
FEED_SUFFIXES = (".rss", ".atom", ".json")
#: Answers worth trying again: the hub is busy or briefly broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Longest wait for one hub's answer.
REQUEST_TIMEOUT = 10.0
USER_AGENT = f"feedsvc/{__version__} (WebSub publisher)"

#: Sends one notification: (hub URL, feed URL, timeout) → (HTTP status, Retry-After seconds or None).
Send = Callable[[str, str, float], tuple[int, float | None]]


def feed_urls(config: Config, changed_paths: Iterable[str]) -> list[str]:
    """The absolute self URLs of the feeds among `changed_paths` (URL paths), sorted, once each."""
    base = base_url(config)
    urls = set()
    for path in changed_paths:
        path = path.lstrip("/")
        if path.startswith("feeds/") and path.endswith(FEED_SUFFIXES) and ".." not in path:
            urls.add(base + path)
    return sorted(urls)


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
        delivery.wait(wait)
    return delivery


def post_publish(hub: str, feed_url: str, timeout: float) -> tuple[int, float | None]:
    """POST the publish notification for `feed_url` to `hub`; its status and Retry-After.

    Network failures raise OSError. Redirects are not followed (a POST must
    not turn into a GET); a 3xx is final like any other non-2xx answer.
    """
    body = urlencode({"hub.mode": "publish", "hub.url": feed_url}).encode("ascii")
    req = urllib.request.Request(
        hub,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65_536)
            return resp.status, None
    except urllib.error.HTTPError as e:
        status, retry = e.code, _retry_after(e.headers.get("Retry-After"))
        e.close()
        return status, retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def hub_name(hub: str) -> str:
    """A hub as logs show it: scheme and host only (a path or query may hold a token)."""
    parts = urlsplit(hub)
    return f"{parts.scheme}://{parts.hostname or '?'}"


class Delivery:
    """The notifications of one change: done when each is sent or given up."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pending: set[tuple[str, str]] = set(pairs)
        #: (hub, feed URL) pairs the hub accepted.
        self.sent: list[tuple[str, str]] = []
        #: (hub, feed URL) pairs given up: a final error, or out of time.
        self.failed: list[tuple[str, str]] = []
        self._done = threading.Event()
        if not self.pending:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done or `timeout` passes; whether it is done."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _finish(self, pair: tuple[str, str], ok: bool) -> None:
        if pair in self.pending:
            self.pending.discard(pair)
            (self.sent if ok else self.failed).append(pair)
            if not self.pending:
                self._done.set()


@dataclass
class _Job:
    hub: str
    url: str
    deadline: float
    due: float
    attempts: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    last_error: str = ""


class Notifier:
    """Delivers publish notifications from one background thread, with retries.

    The thread starts when there is work and ends when there is none left,
    and is started again in a forked child (threads do not survive a fork).
    A feed announced again while its notification is still pending is sent
    once, with the later deadline.
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
    ) -> None:
        self.hubs = tuple(hubs)
        self.timeout = timeout
        self.send = send
        self.clock = clock
        self.on_outcome = on_outcome
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, urls: Iterable[str]) -> Delivery:
        """Queue a notification of each of `urls` to every hub; returns at once."""
        urls = list(urls)
        delivery = Delivery((hub, url) for hub in self.hubs for url in urls)
        if delivery.done:
            return delivery
        if os.getpid() != self._pid:
            # A forked child: the parent's thread is not here, and its
            # condition may have been copied while held.
            self._pid, self._thread, self._cond = os.getpid(), None, threading.Condition()
        with self._cond:
            now = self.clock()
            deadline = now + self.timeout
            for pair in delivery.pending:
                job = self._jobs.get(pair)
                if job is None:
                    job = self._jobs[pair] = _Job(pair[0], pair[1], deadline, now)
                job.deadline = max(job.deadline, deadline)
                job.deliveries.append(delivery)
            self._ensure_thread()
            self._cond.notify()
        return delivery

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="feedsvc-websub", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    return
                now = self.clock()
                due = [job for job in self._jobs.values() if job.due <= now]
                if not due:
                    self._cond.wait(min(job.due for job in self._jobs.values()) - now)
                    continue
            due.sort(key=lambda j: (j.due, j.hub, j.url))
            for job in due:
                self._attempt(job)

    def _attempt(self, job: _Job) -> None:
        now = self.clock()
        remaining = job.deadline - now
        outcome: bool | None = None  # True sent, False failed for good, None try again
        retry_after: float | None = None
        if remaining <= 0:
            outcome = False
            job.last_error = job.last_error or "out of time"
        else:
            job.attempts += 1
            try:
                status, retry_after = self.send(job.hub, job.url, min(REQUEST_TIMEOUT, remaining))
            except (OSError, ValueError) as e:  # network trouble: worth another try
                job.last_error = type(e).__name__
            else:
                if 200 <= status < 300:
                    outcome = True
                else:
                    job.last_error = f"HTTP {status}"
                    if status not in RETRY_STATUSES:
                        outcome = False
        with self._cond:
            if outcome is None:
                backoff = min(self.max_backoff, self.first_backoff * 2 ** (job.attempts - 1))
                job.due = self.clock() + max(backoff, min(retry_after or 0.0, self.max_backoff))
                if job.due >= job.deadline:
                    outcome = False
                    job.last_error += ", then out of time"
            if outcome is not None:
                self._jobs.pop((job.hub, job.url), None)
                for delivery in job.deliveries:
                    delivery._finish((job.hub, job.url), outcome)
        if outcome is True:
            log.debug("websub: notified %s of %s", hub_name(job.hub), job.url)
        elif outcome is False:
            log.warning(
                "websub: gave up telling %s about %s after %d attempt(s): %s",
                hub_name(job.hub), job.url, job.attempts, job.last_error,
            )  # fmt: skip
        if outcome is not None and self.on_outcome is not None:
            self.on_outcome("sent" if outcome else "failed", 1)


class LeaderLock:
    """Whether this process is the one of a server's workers that notifies hubs.

    An exclusive, non-blocking ``flock`` on a file in the server's runtime
    folder: the first process to try holds it until it exits. Without a
    folder every process is its own leader.
    """

    def __init__(self, folder: str | Path | None) -> None:
        self.path = Path(folder) / LOCK_NAME if folder else None
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        if self.path is None:
            return True
        with self._lock:
            pid = os.getpid()
            if self._pid == pid and self._fd is not None:
                return True
            # A descriptor inherited through fork shares the parent's lock: never reuse it.
            self._fd, self._pid = None, pid
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                log.warning("websub: cannot open %s (%s); this process notifies hubs", self.path, e.strerror or e)
                self.path = None
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._fd = fd
            return True


class Publisher:
    """What the web app runs after each reload: announce the feeds whose bytes changed."""

    def __init__(self, config: Config, *, runtime_dir: str | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier(config.websub.hubs, config.websub.timeout)
        folder = runtime_dir if runtime_dir is not None else os.environ.get(RUNTIME_ENV)
        self.leader = LeaderLock(folder)

    def changed(self, paths: Iterable[str]) -> Delivery | None:
        """Notify the hubs of the feeds among `paths`, if this process is the one that notifies."""
        urls = feed_urls(self.config, paths)
        if not urls or not self.config.websub.hubs or not self.leader.held():
            return None
        log.info("websub: telling %d hub(s) about %d changed feed(s)", len(self.config.websub.hubs), len(urls))
        return self.notifier.submit(urls)
