"""End to end: custom feeds, polite polling, /metrics and WebSub in a real `feedsvc serve`.

Each server is gunicorn with two workers on a free 127.0.0.1 port
(tests/servers.py starts and always stops it). Where it matters which worker
answers, the test holds one keep-alive connection to each worker: gunicorn
keeps a connection with the worker that accepted it, and /healthz names that
worker's pid. That is how these tests show that budgets and statistics are
shared by the workers rather than kept per process. Every worker serves the
one build the server's builder process keeps current, so right after a build
every worker reports its generation.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import pytest
import yaml
from conftest import DATA
from prometheus_client.parser import text_string_to_metric_families
from servers import FEEDSVC, Server, free_port, poll, request
from test_query import expected_links, stories
from test_websub import BlackHole, Receiver

from feedsvc.config import load_config
from feedsvc.formats.documents import build_in_memory

QUERY_RECORDS = DATA / "queries" / "records"
BASE_URL = "https://news.example.org/"
FEED_SUFFIXES = (".rss", ".atom", ".json")


def write_config(folder: Path, records: Path, port: int, **sections: Any) -> Path:
    path = folder / "config.yaml"
    data = {
        "site": {"title": "Features e2e", "base_url": BASE_URL},
        "records_dir": str(records),
        "output_dir": str(folder / "public"),
        "max_entries": 10,
        "min_quality": 10,
        "server": {"port": port, "workers": 2, "threads": 2, "reload_interval": 0.5, "cache_max_age": 60},
        **sections,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Site:
    server: Server
    records: Path
    config: Path


def start(folder: Path, **sections: Any) -> Site:
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "records"
    shutil.copytree(QUERY_RECORDS, records)
    port = free_port()
    config = write_config(folder, records, port, **sections)
    server = Server(config, port, folder, workers=2)
    server.start()
    return Site(server, records, config)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # Polite polling on for 127.0.0.1 (exempt by default); each test below polls its own paths.
    s = start(tmp_path_factory.mktemp("features"), polite={"exempt": [], "max_requests": 60, "window_seconds": 600})
    try:
        yield s
    finally:
        s.server.stop()


class Worker:
    """A keep-alive connection that one gunicorn worker answers."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.pid = json.loads(self.get("/healthz")[2])["pid"]

    def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        self.conn.request("GET", target, headers=headers or {})
        resp = self.conn.getresponse()
        body = resp.read()
        assert not resp.will_close, "the worker closed the connection"
        return resp.status, resp.headers, body

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def workers(site: Site) -> Iterator[tuple[Worker, Worker]]:
    """One connection to each of the two workers."""
    found: dict[int, Worker] = {}
    spare: list[Worker] = []
    deadline = time.monotonic() + 20
    while len(found) < 2 and time.monotonic() < deadline:
        w = Worker(site.server.port)
        if w.pid in found:
            spare.append(w)
        else:
            found[w.pid] = w
    try:
        assert len(found) == 2, "could not reach both workers"
        first, second = found.values()
        yield first, second
    finally:
        for w in [*found.values(), *spare]:
            w.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


# -- custom feeds ---------------------------------------------------------------------------


def test_custom_feeds_over_http(site: Site) -> None:
    url = f"{site.server.base}/feeds/all.atom?topic=Robotics&min_quality=40&topic=ai"
    parsed = feedparser.parse(url)
    assert parsed.status == 200 and not parsed.bozo
    assert [e.link for e in parsed.entries] == expected_links(
        "/feeds/all.atom", {"topics": ["ai", "robotics"], "min_quality": 40}, site.records
    )
    selfs = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert selfs == [f"{BASE_URL}feeds/all.atom?min_quality=40&topic=ai&topic=robotics"]
    assert parsed.headers["vary"] == "Accept-Encoding"
    again = feedparser.parse(url, etag=parsed.etag)
    assert again.status == 304
    assert feedparser.parse(url, modified=parsed.modified).status == 304


def test_refused_queries_over_http(site: Site) -> None:
    r = site.server.get("/feeds/topics/ai.rss?limit=1&limit=2")
    assert r.status == 400
    assert r.body == b"400 Bad Request: limit may be given only once\n"
    r = site.server.get("/feeds/topics/ai.rss?limit=" + "9" * 300)
    assert r.status == 400
    assert r.body == b"400 Bad Request: limit is too long (at most 200 characters)\n"


def test_raw_non_ascii_in_the_request_line_reads_as_utf8(site: Site) -> None:
    """Raw (unescaped) UTF-8 in a request target is read as the %-escaped form would be
    (granian hands the bytes on; the app reads them as UTF-8, test_query.py)."""
    target = "/feeds/all.rss?topic=Künstliche+Intelligenz".encode()
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, raw_body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:100]
    escaped = site.server.get("/feeds/all.rss?topic=K%C3%BCnstliche+Intelligenz")
    assert raw_body == escaped.body
    assert escaped.status == 200
    parsed = feedparser.parse(escaped.body)
    assert [e.link for e in parsed.entries] == expected_links(
        "/feeds/all.rss", {"topics": ["kunstliche-intelligenz"]}, site.records
    )
    assert [link.href for link in parsed.feed.links if link.rel == "self"] == [
        f"{BASE_URL}feeds/all.rss?topic=kunstliche-intelligenz"
    ]


def test_every_worker_gives_a_custom_feed_the_same_bytes_and_etag(workers: tuple[Worker, Worker]) -> None:
    answers = [w.get("/feeds/topics/ai.json?provider=beta.example&limit=2") for w in workers]
    assert {a[0] for a in answers} == {200}
    assert answers[0][1]["ETag"] == answers[1][1]["ETag"]
    assert answers[0][2] == answers[1][2]
    status, headers, _ = workers[1].get(
        "/feeds/topics/ai.json?limit=2&provider=www.beta.example", {"If-None-Match": answers[0][1]["ETag"]}
    )
    assert status == 304 and headers["ETag"] == answers[0][1]["ETag"]


# -- polite polling ------------------------------------------------------------------------


def test_the_budget_is_shared_by_the_workers(workers: tuple[Worker, Worker]) -> None:
    path = "/feeds/topics/robotics.rss"
    for i in range(30):
        for w in workers:
            assert w.get(path)[0] == 200, (i, w.pid)
    for w in workers:  # the 61st and 62nd fetch, whichever worker answers
        status, headers, body = w.get(path)
        assert status == 429, w.pid
        assert headers["Retry-After"].isdigit() and 590 <= int(headers["Retry-After"]) <= 600
        assert body.startswith(b"429 Too Many Requests: this address fetched this URL more than 60 times")
    assert workers[0].get("/feeds/topics/robotics.atom")[0] == 200  # another URL: its own budget


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_add_up_every_worker(workers: tuple[Worker, Worker]) -> None:
    path = "/feeds/providers/alpha.example.atom"
    before = samples(workers[0].get("/metrics")[2])
    sent = 0
    etag = ""
    for w, fetches in zip(workers, (7, 4), strict=True):
        for _ in range(fetches):
            status, headers, body = w.get(path)
            assert status == 200
            sent += len(body)
            etag = headers["ETag"]
        for _ in range(3):
            assert w.get(path, {"If-None-Match": etag})[0] == 304
    assert workers[1].get("/feeds/providers/nobody.example.atom")[0] == 404
    after = samples(workers[1].get("/metrics")[2])  # the other worker scrapes: same totals

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("feedsvc_http_requests_total", kind="providers", status="200") == 11
    assert delta("feedsvc_http_requests_total", kind="providers", status="304") == 6
    assert delta("feedsvc_http_requests_total", kind="providers", status="404") == 1
    assert delta("feedsvc_http_not_modified_total", kind="providers") == 6
    assert delta("feedsvc_http_response_bytes_total", kind="providers") == sent + len(
        workers[1].get("/feeds/providers/nobody.example.atom")[2]
    )
    assert value(after, "feedsvc_records_loaded") == 14  # usable records, published or not
    assert value(after, "feedsvc_records_rejected") == 0


# -- WebSub --------------------------------------------------------------------------------


def generations(server: Server, tries: int = 12) -> dict[int, int]:
    """Each worker's generation (the build it serves), from /healthz over fresh connections."""
    seen: dict[int, int] = {}
    for _ in range(tries):
        health = json.loads(request(server.port, "/healthz").body)
        seen[health["pid"]] = health["generation"]
    return seen


def test_a_change_is_built_once_and_each_changed_feed_notified_once(tmp_path: Path) -> None:
    with Receiver() as hub, BlackHole() as dead:
        # The full-scan fallback far off: only the builder's file events can start a build.
        server = {"workers": 2, "threads": 2, "reload_interval": 300, "cache_max_age": 60}
        s = start(tmp_path / "websub", websub={"hubs": [hub.url, dead.url], "timeout": 3}, server=server)
        try:
            config = load_config(s.config)
            feeds = sorted(p for p in build_in_memory(config).documents if p.endswith(FEED_SUFFIXES))
            before = {p: s.server.get("/" + p).body for p in feeds}
            parsed = feedparser.parse(before["feeds/all.rss"])
            assert [link.href for link in parsed.feed.links if link.rel == "hub"] == [hub.url, dead.url]
            assert poll(lambda: len(generations(s.server)) == 2, timeout=10)
            assert set(generations(s.server).values()) == {1}  # the build `feedsvc serve` made first
            first_build = s.server.health()["last_build"]
            assert first_build
            # The first build made every feed: the hubs hear of each once (as after `feedsvc build`).
            startup = sorted(BASE_URL + p for p in feeds if "/archive/" not in p)
            hub.wait_for(len(startup), timeout=10)
            time.sleep(0.5)
            assert Counter(hub.feed_urls()) == Counter(startup)
            hub.requests.clear()

            story = s.records / "story-06.txt"
            changed_text = story.read_text(encoding="utf-8").replace("Story 6:", "Story 6 (updated):")
            fresh = story.with_name(".story-06.tmp")
            fresh.write_text(changed_text, encoding="utf-8")
            saved = time.monotonic()
            os.replace(fresh, story)  # one change, seen whole by the build
            assert poll(lambda: s.server.health()["generation"] == 2, timeout=15, interval=0.05)
            assert time.monotonic() - saved < 5  # a file event, ~0.1 to 1 s of settling, one small build
            # Right after the build every worker serves it: they all read the one cache.
            seen = generations(s.server)
            assert len(seen) == 2 and set(seen.values()) == {2}, seen
            health = s.server.health()
            assert health["last_build"] >= first_build and health["records_loaded"] == 14

            after = {p: s.server.get("/" + p).body for p in feeds}
            changed = sorted(BASE_URL + p for p in feeds if after[p] != before[p] and "/archive/" not in p)
            assert 0 < len(changed) < len(feeds)
            # Archive pages name no hub, so hubs never hear of them (websub.feed_urls).
            # Requests stay fast while the dead hub's notifications wait for their time limit.
            for _ in range(10):
                started = time.monotonic()
                assert s.server.get("/feeds/all.atom").status == 200
                assert time.monotonic() - started < 0.5
            hub.wait_for(len(changed), timeout=10)
            time.sleep(1.0)  # give a duplicate (a second build, a worker notifying) time to show up
            assert Counter(hub.feed_urls()) == Counter(changed)  # each changed feed exactly once
            assert s.server.health()["generation"] == 2  # one change, one build
            metrics = samples(s.server.get("/metrics").body)
            assert value(metrics, "feedsvc_websub_notifications_total", outcome="sent") == len(startup) + len(changed)
            # Nothing a record keeps secret reaches the log or a hub.
            logs = s.server.stdout() + s.server.stderr() + repr(hub.requests)
            for story in stories(s.records):
                assert story.secured not in logs
        finally:
            s.server.stop()


def disk_feeds(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.suffix in FEED_SUFFIXES and not p.name.startswith(".") and "/archive/" not in p.as_posix()
    }


def test_changes_made_while_the_server_was_down_are_announced(tmp_path: Path) -> None:
    """`feedsvc serve` brings the folder up to date with a build; the feeds that build changed are news too."""
    with Receiver() as hub:
        folder = tmp_path / "down"
        folder.mkdir()
        records = folder / "records"
        shutil.copytree(QUERY_RECORDS, records)
        port = free_port()
        config = write_config(folder, records, port, websub={"hubs": [hub.url], "timeout": 5})
        done = subprocess.run(
            [str(FEEDSVC), "--config", str(config), "build"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        first = disk_feeds(folder / "public")
        hub.wait_for(len(first))
        count = len(hub.requests)
        assert count == len(first)  # `feedsvc build` announced every feed it wrote

        story = records / "story-06.txt"  # changed while no server runs
        story.write_text(story.read_text(encoding="utf-8").replace("Story 6:", "Story 6 (updated):"), encoding="utf-8")
        server = Server(config, port, folder, workers=2).start()
        try:
            second = disk_feeds(folder / "public")
            changed = sorted(BASE_URL + p for p in second if second[p] != first.get(p))
            assert 0 < len(changed) < len(second)
            hub.wait_for(count + len(changed), timeout=5)
            time.sleep(0.5)
            assert sorted(hub.feed_urls()[count:]) == changed
        finally:
            server.stop()
