"""WebSub (`feedsvc.websub`): hub links in every feed, publish notifications to real hubs.

The hub is a `Receiver`: an HTTP server on a free 127.0.0.1 port, in a
thread, that records every notification it gets and answers as a test tells
it to (204, a 500 first, a redirect). A hub that never answers is a listening
socket nobody accepts from. Changed feeds are worked out independently of
feedsvc's own bookkeeping: by comparing every feed's bytes before and after
(served by the app, or written by `feedsvc build` to disk).
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import feedparser
import pytest
import yaml
from flask.testing import FlaskClient

from feedsvc.config import Config, WebSubConfig, base_url
from feedsvc.reload import LiveSite
from feedsvc.site import build
from feedsvc.web import create_app
from feedsvc.websub import LOCK_NAME, Delivery, Notifier, Publisher, feed_urls, hub_name, post_publish
from servers import FEEDSVC, poll
from test_validity import check_feed

FEED_SUFFIXES = (".rss", ".atom", ".json")


# -- a hub on 127.0.0.1 --------------------------------------------------------------------


class Receiver:
    """A stand-in WebSub hub that records publish notifications.

    It answers 204, except: the first `fail_first` notifications of each feed
    URL get 500 (with `retry_after`, if set), and with `redirect` every answer
    is a 302 elsewhere.
    """

    def __init__(self, *, fail_first: int = 0, retry_after: str | None = None, redirect: bool = False) -> None:
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.redirect = redirect
        #: Every request: (method, path, content type, user agent, form fields, monotonic time).
        self.requests: list[tuple[str, str, str, str, dict[str, list[str]], float]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
                with receiver._lock:
                    receiver.requests.append(
                        (
                            "POST", self.path, self.headers.get("Content-Type", ""), self.headers.get("User-Agent", ""),
                            form, time.monotonic(),
                        )
                    )  # fmt: skip
                    seen = sum(1 for r in receiver.requests if r[4].get("hub.url") == form.get("hub.url"))
                if receiver.redirect:
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere")
                elif seen <= receiver.fail_first:
                    self.send_response(500)
                    if receiver.retry_after:
                        self.send_header("Retry-After", receiver.retry_after)
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # a redirect followed would show up as a GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def feed_urls(self) -> list[str]:
        """The hub.url of every publish notification, in arrival order."""
        with self._lock:
            return [r[4]["hub.url"][0] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        poll(lambda: len(self.requests) >= count, timeout=timeout, interval=0.02)
        return self.feed_urls()


class BlackHole:
    """A hub that never answers: it listens, and nobody ever accepts or reads."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hub"

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hub"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def with_hubs(config: Config, *hubs: str, timeout: float = 10.0) -> Config:
    return dataclasses.replace(config, websub=WebSubConfig(hubs=hubs, timeout=timeout))


def feed_bodies(client: FlaskClient, paths: list[str]) -> dict[str, bytes]:
    return {p: client.get("/" + p).data for p in paths}


# -- discovery ----------------------------------------------------------------------------


HUBS = ("https://hub.example.org/websub", "https://pubsubhubbub.example.com/")


def test_every_feed_names_its_hubs_and_itself(config: Config) -> None:
    config = with_hubs(config, *HUBS)
    client = create_app(config, background=False).test_client()
    documents = build(config).documents
    feeds = sorted(p for p in documents if p.endswith(FEED_SUFFIXES))
    assert len(feeds) == 15
    for path in feeds:
        r = client.get("/" + path)
        self_url = base_url(config) + path
        assert r.data == documents[path].body  # the static file says the same
        if path.endswith(".json"):
            doc = json.loads(r.data)
            assert doc["hubs"] == [{"type": "WebSub", "url": hub} for hub in HUBS]
            assert doc["feed_url"] == self_url
        else:
            parsed = feedparser.parse(r.data)
            assert not parsed.bozo
            assert [link.href for link in parsed.feed.links if link.rel == "hub"] == list(HUBS), path
            assert [link.href for link in parsed.feed.links if link.rel == "self"] == [self_url]
            assert not check_feed(r.data), (path, check_feed(r.data))
        # RFC 8288 Link header: what WebSub discovery reads first.
        assert r.headers["Link"] == f'<{HUBS[0]}>; rel="hub", <{HUBS[1]}>; rel="hub", <{self_url}>; rel="self"'
        assert "Link" not in client.get("/" + path, headers={"If-None-Match": r.headers["ETag"]}).headers
    assert "Link" not in client.get("/index.html").headers
    # A custom feed names no hub: hubs hear only of the feeds a build writes, so a
    # subscription to it through a hub would never be served; readers poll it.
    custom = client.get("/feeds/topics/ai.atom?provider=www.jalopnik.com&limit=1")
    canonical = base_url(config) + "feeds/topics/ai.atom?limit=1&provider=jalopnik.com"
    assert "Link" not in custom.headers
    assert [(link.rel, link.href) for link in feedparser.parse(custom.data).feed.links if link.rel in ("hub", "self")] == [
        ("self", canonical)
    ]
    assert "hubs" not in json.loads(client.get("/feeds/all.json?limit=1").data)


def test_without_hubs_no_feed_names_one(config: Config) -> None:
    client = create_app(config, background=False).test_client()
    for path in ("feeds/all.rss", "feeds/all.atom"):
        r = client.get("/" + path)
        assert "Link" not in r.headers
        assert not [link for link in feedparser.parse(r.data).feed.links if link.rel == "hub"]
    assert "hubs" not in json.loads(client.get("/feeds/all.json").data)


# -- sending notifications ------------------------------------------------------------------


def test_a_publish_notification_is_a_form_post(receiver: Receiver) -> None:
    status, retry = post_publish(receiver.url, "https://news.example.org/feeds/all.atom", 5.0)
    assert (status, retry) == (204, None)
    [(method, path, content_type, agent, form, _)] = receiver.requests
    assert (method, path) == ("POST", "/hub")
    assert content_type == "application/x-www-form-urlencoded"
    assert agent.startswith("feedsvc/")
    assert form == {"hub.mode": ["publish"], "hub.url": ["https://news.example.org/feeds/all.atom"]}


def test_a_redirect_is_not_followed() -> None:
    with Receiver(redirect=True) as hub:
        assert post_publish(hub.url, "https://x.example/feeds/all.rss", 5.0)[0] == 302
        time.sleep(0.1)
        assert [r[0] for r in hub.requests] == ["POST"]


def test_a_hub_answering_500_then_204_is_retried() -> None:
    with Receiver(fail_first=1) as hub:
        notifier = Notifier([hub.url], timeout=10, first_backoff=0.2)
        delivery = notifier.submit(["https://x.example/feeds/all.atom"])
        assert delivery.wait(5)
        assert delivery.sent == [(hub.url, "https://x.example/feeds/all.atom")] and not delivery.failed
        assert hub.feed_urls() == ["https://x.example/feeds/all.atom"] * 2
        first, second = (r[5] for r in hub.requests)
        assert second - first >= 0.2  # after the backoff
        assert delivery.summary() == "WebSub: notified 1 hub of 1 feed"


def test_retry_after_from_the_hub_is_honoured() -> None:
    with Receiver(fail_first=1, retry_after="1") as hub:
        delivery = Notifier([hub.url], timeout=10, first_backoff=0.05).submit(["https://x.example/a.atom"])
        assert delivery.wait(5)
        first, second = (r[5] for r in hub.requests)
        assert second - first >= 0.95


def test_a_final_error_is_not_retried() -> None:
    with Receiver(redirect=True) as hub:  # 302: not 2xx, not worth repeating
        delivery = Notifier([hub.url], timeout=10, first_backoff=0.05).submit(["https://x.example/a.atom"])
        assert delivery.wait(5)
        assert delivery.failed and not delivery.sent
        time.sleep(0.2)
        assert len(hub.requests) == 1
        assert delivery.summary() == (
            f"WebSub: 0 of 1 notification delivered (1 hub, 1 feed); not delivered: {hub_name(hub.url)}: HTTP 302"
        )


def test_a_hub_that_is_down_is_retried_until_the_time_limit() -> None:
    url = closed_port_url()
    started = time.monotonic()
    delivery = Notifier([url], timeout=1.0, first_backoff=0.1).submit(["https://x.example/a.atom"])
    assert delivery.wait(5)
    assert 0.7 <= time.monotonic() - started < 2.5
    assert delivery.failed == [(url, "https://x.example/a.atom")]
    assert f"not delivered: {hub_name(url)}: ConnectionRefusedError" in delivery.summary()


def test_a_hub_that_never_answers_delays_no_other_hub(receiver: Receiver) -> None:
    urls = sorted(f"https://x.example/feeds/topics/t{i}.atom" for i in range(12))
    with BlackHole() as dead:
        started = time.monotonic()
        delivery = Notifier([dead.url, receiver.url], timeout=2.0).submit(urls)
        assert sorted(receiver.wait_for(len(urls), timeout=1.5)) == urls
        assert time.monotonic() - started < 1.5  # well before the dead hub's attempts time out
        assert delivery.wait(4)
        assert time.monotonic() - started < 3.5
    assert sorted(delivery.sent) == [(receiver.url, u) for u in urls]
    assert sorted(delivery.failed) == [(dead.url, u) for u in urls]


def test_a_feed_announced_twice_while_waiting_is_sent_once(receiver: Receiver) -> None:
    gate = threading.Event()
    calls: list[str] = []

    def send(hub: str, url: str, timeout: float) -> tuple[int, float | None]:
        calls.append(url)
        gate.wait(5)
        return 204, None

    notifier = Notifier(["https://hub.example/"], timeout=10, send=send, concurrency=1)
    first = notifier.submit(["u1", "u2"])
    poll(lambda: calls, timeout=2)  # u1 is on the wire, u2 waits
    second = notifier.submit(["u2"])  # waiting: merged
    third = notifier.submit(["u1"])  # on the wire: sent again after it, the feed may have changed since
    gate.set()
    assert first.wait(5) and second.wait(5) and third.wait(5)
    assert Counter(calls) == {"u1": 2, "u2": 1}
    assert notifier.pending() == 0


def test_feed_urls_are_the_changed_feeds_only(config: Config) -> None:
    changed = [
        "feeds/all.atom", "/feeds/topics/ai.json", "index.html", "feeds.opml", "feeds/all.html", "style.css",
        "feeds/all.atom", "feeds/all/archive/3.atom", "feeds/topics/ai/archive/1.rss",
    ]  # fmt: skip
    assert feed_urls(config, changed) == [
        "http://127.0.0.1:8000/feeds/all.atom",
        "http://127.0.0.1:8000/feeds/topics/ai.json",
    ]


# -- live reload ------------------------------------------------------------------------------


def test_a_live_reload_notifies_the_feeds_whose_bytes_changed(config: Config, receiver: Receiver) -> None:
    app = create_app(with_hubs(config, receiver.url), background=False)
    live: LiveSite = app.extensions["feedsvc"]
    client = app.test_client()
    feeds = sorted(p for p in live.snapshot.documents if p.endswith(FEED_SUFFIXES))
    before = feed_bodies(client, feeds)
    assert not live.reload_now().swapped
    record = sorted(Path(config.records_dir).glob("*.txt"))[1]
    text = record.read_text(encoding="utf-8")
    record.write_text(text.replace("quality: 30", "quality: 31").replace("title: \"", "title: \"Updated: ", 1), encoding="utf-8")
    assert live.reload_now().swapped
    after = feed_bodies(client, feeds)
    changed = sorted(base_url(config) + p for p in feeds if before[p] != after[p])
    assert 0 < len(changed) < len(feeds)
    assert sorted(receiver.wait_for(len(changed))) == changed
    time.sleep(0.3)
    assert sorted(receiver.feed_urls()) == changed  # each exactly once, and nothing else
    assert not live.reload_now().swapped
    time.sleep(0.2)
    assert len(receiver.requests) == len(changed)
    metrics = client.get("/metrics").data.decode()
    assert f'feedsvc_websub_notifications_total{{outcome="sent"}} {len(changed)}.0' in metrics.splitlines()


def test_only_the_worker_holding_the_lock_notifies(config: Config, tmp_path: Path, receiver: Receiver) -> None:
    config = with_hubs(config, receiver.url)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(tmp_path / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        publisher = Publisher(config, runtime_dir=str(tmp_path))
        assert publisher.changed(["feeds/all.atom"]) is None  # another worker notifies
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    delivery = publisher.changed(["feeds/all.atom"])  # that worker is gone: this one takes over
    assert delivery is not None and delivery.wait(5)
    assert receiver.feed_urls() == ["http://127.0.0.1:8000/feeds/all.atom"]


# -- feedsvc build ------------------------------------------------------------------------------


def write_build_config(folder: Path, records: Path, hubs: list[str], timeout: float = 10) -> Path:
    path = folder / "config.yaml"
    data = {
        "site": {"title": "WebSub test", "base_url": "https://news.example.org/"},
        "records_dir": str(records),
        "output_dir": str(folder / "public"),
        "include_unpublished": True,
        "websub": {"hubs": hubs, "timeout": timeout},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_build(config: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([str(FEEDSVC), "--config", str(config), "build"], capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def disk_feeds(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.suffix in FEED_SUFFIXES and not p.name.startswith(".")  # not the build's manifest
    }


def test_feedsvc_build_notifies_the_feeds_it_changed(seeds_dir: Path, tmp_path: Path) -> None:
    with Receiver() as hub:
        config = write_build_config(tmp_path, seeds_dir, [hub.url])
        done, _ = run_build(config)
        assert done.returncode == 0, done.stderr
        first = disk_feeds(tmp_path / "public")
        assert len(first) == 15
        assert sorted(hub.feed_urls()) == sorted(f"https://news.example.org/{p}" for p in first)
        assert done.stderr.splitlines()[-1] == "WebSub: notified 1 hub of 15 feeds"

        record = sorted(seeds_dir.glob("*.txt"))[0]
        record.write_text(record.read_text(encoding="utf-8").replace("quality: 34", "quality: 35"), encoding="utf-8")
        # …and a title, so the feed bytes change (quality is not published).
        record.write_text(record.read_text(encoding="utf-8").replace('title: "UK', 'title: "Now: UK', 1), encoding="utf-8")
        count = len(hub.requests)
        done, _ = run_build(config)
        assert done.returncode == 0, done.stderr
        second = disk_feeds(tmp_path / "public")
        changed = sorted(f"https://news.example.org/{p}" for p in second if second[p] != first.get(p))
        assert 0 < len(changed) < len(second)
        assert sorted(hub.feed_urls()[count:]) == changed
        assert done.stderr.splitlines()[-1] == f"WebSub: notified 1 hub of {len(changed)} feeds"

        count = len(hub.requests)
        done, _ = run_build(config)
        assert done.returncode == 0
        assert done.stderr.splitlines()[-1] == "WebSub: no feed changed, no hub notified"
        assert len(hub.requests) == count


def test_feedsvc_build_retries_a_hub_that_fails_first(seeds_dir: Path, tmp_path: Path) -> None:
    with Receiver(fail_first=1) as hub:
        done, _ = run_build(write_build_config(tmp_path, seeds_dir, [hub.url]))
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1] == "WebSub: notified 1 hub of 15 feeds"
        assert Counter(Counter(hub.feed_urls()).values()) == {2: 15}  # every feed: a 500, then a 204


def test_a_hub_that_never_answers_does_not_hold_up_the_build(seeds_dir: Path, tmp_path: Path) -> None:
    secret_hub = "?token=HUBTOKEN-" + "k" * 20
    with BlackHole() as dead, Receiver() as alive:
        refused = closed_port_url()
        config = write_build_config(tmp_path, seeds_dir, [dead.url + secret_hub, alive.url, refused], timeout=2)
        done, seconds = run_build(config)
    assert done.returncode == 0, done.stderr
    assert seconds < 2 + 6  # the time limit, plus the build itself on a busy machine
    last = done.stderr.splitlines()[-1]
    assert last.startswith("WebSub: 15 of 45 notifications delivered (3 hubs, 15 feeds); not delivered: ")
    assert f"{hub_name(refused)}: ConnectionRefusedError" in last
    assert re.search(rf"{re.escape(hub_name(dead.url))}: (TimeoutError|no answer in time|out of time)", last)
    assert hub_name(alive.url) not in last
    assert "HUBTOKEN" not in done.stderr + done.stdout  # hubs are shown by scheme and host only
    assert len(alive.requests) == 15


def test_a_build_without_hubs_says_nothing_of_websub(seeds_dir: Path, tmp_path: Path) -> None:
    done, _ = run_build(write_build_config(tmp_path, seeds_dir, []))
    assert done.returncode == 0
    assert "WebSub" not in done.stderr


def test_summary_of_a_delivery_with_nothing_to_send() -> None:
    assert Delivery([]).summary() == "WebSub: no feed changed, no hub notified"
    assert Delivery([]).wait(0)


def test_a_sender_logs_its_failure_before_the_delivery_is_done() -> None:
    # A waiter woken by the last outcome prints its summary at once (feedsvc
    # build does): every line about the delivery must already be out by then.
    import logging

    done_when_logged: list[bool] = []
    delivery_ref: list[Delivery] = []
    ready = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            ready.wait(5)
            done_when_logged.append(delivery_ref[0].done)

    def refuses(hub: str, url: str, timeout: float) -> tuple[int, float | None]:
        return 400, None  # a final answer: given up at once

    logger = logging.getLogger("feedsvc.websub")
    watch = Watch(logging.WARNING)
    logger.addHandler(watch)
    try:
        delivery = Notifier(["https://hub.example/"], 5, send=refuses).submit(["https://feeds.example/all.atom"])
        delivery_ref.append(delivery)
        ready.set()
        assert delivery.wait(5)
    finally:
        logger.removeHandler(watch)
    assert delivery.failed and done_when_logged == [False]
