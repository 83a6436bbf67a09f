"""WebSub (`feedsvc.web.websub`): hub links in every feed, publish notifications to real hubs.

The hub is a `Receiver`: an HTTP server on a free 127.0.0.1 port, in a
thread, that records every notification it gets and answers as a test tells
it to (204, a 500 first, a redirect). A hub that never answers is a listening
socket nobody accepts from. Changed feeds are worked out independently of
feedsvc's own bookkeeping: by comparing every feed's bytes before and after
(served by the app, or written by `feedsvc build` to disk).

Only a build notifies: `feedsvc build` after its build, and under `feedsvc
serve` the one builder process (`builder.Builder`, driven here in-process)
after each build; the web app's workers only serve what was built.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
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
from conftest import served_app
from flask.testing import FlaskClient
from servers import FEEDSVC, poll
from test_validity import check_feed

from feedsvc.build import incremental
from feedsvc.config import ArchivesConfig, Config, WebSubConfig, base_url
from feedsvc.formats.documents import build_in_memory
from feedsvc.web import builder
from feedsvc.web.app import create_app
from feedsvc.web.websub import Delivery, Notifier, feed_urls, hub_name
from feedsvc.web.websub_post import post_publish

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
    client = served_app(config).test_client()
    documents = build_in_memory(config).documents
    feeds = sorted(p for p in documents if p.endswith(FEED_SUFFIXES))
    assert len(feeds) == 15
    for path in feeds:
        r = client.get("/" + path)
        self_url = base_url(config) + path
        assert (
            r.data == documents[path].body == (config.output_dir / path).read_bytes()
        )  # the static file says the same
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
    assert [
        (link.rel, link.href) for link in feedparser.parse(custom.data).feed.links if link.rel in ("hub", "self")
    ] == [("self", canonical)]
    assert "hubs" not in json.loads(client.get("/feeds/all.json?limit=1").data)


def test_archive_pages_name_no_hub_in_the_body_or_the_link_header(config: Config) -> None:
    """Nobody subscribes to an archive page, and hubs are never told of one (`feed_urls`):
    its Link header must not point readers at a hub either (it once did)."""
    config = dataclasses.replace(
        with_hubs(config, *HUBS), max_entries=1, archives=ArchivesConfig(enabled=True, page_size=1)
    )
    client = served_app(config).test_client()
    pages = sorted(p for p in build_in_memory(config).documents if "/archive/" in p)
    assert pages
    for path in pages:
        r = client.get("/" + path)
        assert r.status_code == 200 and "Link" not in r.headers, path
        assert not [link for link in feedparser.parse(r.data).feed.links if link.rel == "hub"], path
    assert "Link" in client.get("/feeds/all.atom").headers


def test_without_hubs_no_feed_names_one(config: Config) -> None:
    client = served_app(config).test_client()
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


# -- the builder ------------------------------------------------------------------------------


def changed_record(config: Config) -> None:
    """Change one seed record so that some feeds' bytes change (a title) and not all."""
    record = sorted(Path(config.records_dir).glob("*.txt"))[1]
    text = record.read_text(encoding="utf-8")
    record.write_text(
        text.replace("quality: 30", "quality: 31").replace('title: "', 'title: "Updated: ', 1), encoding="utf-8"
    )


def quiet(receiver: Receiver, count: int, seconds: float = 0.3) -> None:
    """Wait a little, then check the hub got exactly `count` notifications (nothing late)."""
    time.sleep(seconds)
    assert len(receiver.requests) == count, receiver.feed_urls()[count:]


def test_a_build_notifies_the_feeds_whose_bytes_changed(config: Config, receiver: Receiver) -> None:
    config = with_hubs(config, receiver.url)
    outcomes: list[tuple[str, int]] = []
    notifier = Notifier(config.websub.hubs, config.websub.timeout, on_outcome=lambda o, n: outcomes.append((o, n)))
    b = builder.Builder(config, config.output_dir, build=builder.build_once, notifier=notifier)
    feeds = sorted(p for p in build_in_memory(config).documents if p.endswith(FEED_SUFFIXES))
    # The first build writes every feed: each is announced, as `feedsvc build` does.
    first = b.build()
    assert first.ok, first.summary
    assert sorted(receiver.wait_for(len(feeds))) == sorted(base_url(config) + p for p in feeds)
    quiet(receiver, len(feeds))
    client = create_app(config).test_client()
    before = feed_bodies(client, feeds)
    assert b.build().changed_paths == ()  # nothing changed: nothing rendered, nobody told
    quiet(receiver, len(feeds))

    changed_record(config)
    second = b.build()
    assert second.ok and second.changed_paths
    after = feed_bodies(client, feeds)  # what the app serves now: the new build
    changed = sorted(base_url(config) + p for p in feeds if before[p] != after[p])
    assert 0 < len(changed) < len(feeds)
    assert sorted(receiver.wait_for(len(feeds) + len(changed))[len(feeds) :]) == changed  # each exactly once
    quiet(receiver, len(feeds) + len(changed))
    assert b.build().changed_paths == ()
    quiet(receiver, len(feeds) + len(changed))
    assert sum(n for o, n in outcomes if o == "sent") == len(feeds) + len(changed)
    assert not [o for o, _ in outcomes if o != "sent"]


def test_workers_never_notify_only_the_builder_does(config: Config, receiver: Receiver) -> None:
    """However many workers serve a build, a change reaches the hub once: from the builder."""
    config = with_hubs(config, receiver.url)
    incremental.build(config)  # built before the server, as `feedsvc serve` does (not a change to announce)
    workers = [create_app(config).test_client() for _ in range(3)]
    feeds = sorted(p for p in build_in_memory(config).documents if p.endswith(FEED_SUFFIXES))
    before = feed_bodies(workers[0], feeds)
    for w in workers:
        assert "Link" in w.get("/feeds/all.atom").headers  # they do name the hub

    # A build by another process that tells no hub (`feedsvc build` without hubs):
    # every worker serves it, and none of them notifies.
    changed_record(config)
    assert incremental.build(dataclasses.replace(config, websub=WebSubConfig())).changed_paths
    served = [feed_bodies(w, feeds) for w in workers]
    assert served[0] != before and all(bodies == served[0] for bodies in served)
    assert {json.loads(w.get("/healthz").data)["generation"] for w in workers} == {2}
    quiet(receiver, 0, seconds=0.5)

    # The builder's next build: the hub hears of its changes once, whatever the workers do.
    middle = feed_bodies(workers[0], feeds)
    record = sorted(Path(config.records_dir).glob("*.txt"))[0]
    record.write_text(record.read_text(encoding="utf-8").replace('title: "', 'title: "Later: ', 1), encoding="utf-8")
    b = builder.Builder(config, config.output_dir, build=builder.build_once)
    assert b.build().changed_paths
    served = [feed_bodies(w, feeds) for w in workers]
    assert all(bodies == served[0] for bodies in served)
    assert {json.loads(w.get("/healthz").data)["generation"] for w in workers} == {3}
    changed = sorted(base_url(config) + p for p in feeds if served[0][p] != middle[p])
    assert changed
    assert sorted(receiver.wait_for(len(changed))) == changed
    quiet(receiver, len(changed))


def test_the_builder_rebuilds_on_a_file_event_and_notifies(config: Config, receiver: Receiver) -> None:
    """`Builder.run` (the builder process's loop, in its forked-child builds) reacts to a saved file.

    The full-scan fallback is set far off, so only the file event can start the build.
    """
    config = with_hubs(config, receiver.url)
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, reload_interval=300))
    outcomes: list[tuple[float, builder.Outcome]] = []
    b = builder.Builder(config, config.output_dir, on_build=lambda o: outcomes.append((time.monotonic(), o)))
    thread = threading.Thread(target=b.run, daemon=True)
    thread.start()
    try:
        assert poll(lambda: outcomes, timeout=60)  # the first build
        assert outcomes[0][1].ok, outcomes[0][1].summary
        feeds = sorted(p for p in build_in_memory(config).documents if p.endswith(FEED_SUFFIXES))
        receiver.wait_for(len(feeds))
        quiet(receiver, len(feeds))
        client = create_app(config).test_client()
        before = feed_bodies(client, feeds)
        time.sleep(0.5)  # the watcher is set up
        changed_record(config)
        saved = time.monotonic()
        assert poll(lambda: len(outcomes) >= 2, timeout=30)
        when, second = outcomes[1]
        assert second.ok and second.changed_paths, second.summary
        assert when - saved < 3  # ~0.1 to 1 s of settling, then the (small) build itself
        after = feed_bodies(client, feeds)
        changed = sorted(base_url(config) + p for p in feeds if before[p] != after[p])
        assert changed
        assert sorted(receiver.wait_for(len(feeds) + len(changed))[len(feeds) :]) == changed
        quiet(receiver, len(feeds) + len(changed))
        assert len(outcomes) == 2  # one build for one change
    finally:
        b.stop()
        thread.join(10)
    assert not thread.is_alive()


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
        record.write_text(
            record.read_text(encoding="utf-8").replace('title: "UK', 'title: "Now: UK', 1), encoding="utf-8"
        )
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
    # It is one line for the change, naming each hub once.
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
    watch = Watch(logging.INFO)
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        delivery = Notifier(["https://hub.example/"], 5, send=refuses).submit(
            [f"https://feeds.example/{n}.atom" for n in range(15)]
        )
        delivery_ref.append(delivery)
        ready.set()
        assert delivery.wait(5)
    finally:
        logger.removeHandler(watch)
        logger.setLevel(logging.NOTSET)
    assert len(delivery.failed) == 15 and done_when_logged == [False]  # one line, not one per feed
