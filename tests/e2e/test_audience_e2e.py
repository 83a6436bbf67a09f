"""The audience end to end: real `feedsvc serve` processes, real nginx, scripted feed readers.

The readers of tests/data/audience/traffic.yaml poll a server with
``audience.enabled`` (two granian workers sharing one store); its
/audience.html and /metrics must show the figures the traffic file
expects. The same readers then poll through nginx with deploy/nginx-proxy.conf
in front of another server, and `feedsvc audience` over nginx's access log
must give the same figures. A server without the setting has no
/audience.html (404) and records nothing; a server restarted keeps its
report; a store broken under a running server never fails a request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audience import TRAFFIC, check, json_figures, page_figures, play, run_traffic
from conftest import copy_seeds
from nginx import start_proxy
from servers import FEEDSVC, Server, free_port, poll, request, write_config

from feedsvc.web.audience.store import store_path

#: Seconds a worker counts before it writes to the store, in these tests.
FLUSH = 0.3
#: Longest wait for the workers' writes to show on the page.
SHOWN = 20.0


@dataclass
class Site:
    server: Server
    config: Path
    out: Path


def serve(work: Path, *, audience: bool, workers: int = 2) -> Site:
    records = copy_seeds(work / "records")
    settings = {"audience": {"enabled": True, "flush_seconds": FLUSH}} if audience else {}
    config = write_config(work / "config.yaml", records, settings=settings, workers=workers)
    server = Server(config, free_port(), work, workers=workers).start()
    return Site(server, config, work / "public")


def figures_when(site: Site, done: Any) -> dict[str, Any]:
    """The page's figures once `done(figures)` holds (every worker has written), or the last ones seen."""
    last: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal last
        r = site.server.get("/audience.html")
        assert r.status == 200
        last = page_figures(r.body)
        return bool(done(last))

    poll(ready, timeout=SHOWN, interval=0.2)
    return last


def total_polls(n: int) -> Any:
    return lambda figures: figures["total"].get("polls") == n


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, dict[str, Any]]]:
    """A server with the audience on, after the traffic: the site and its page's figures."""
    site = serve(tmp_path_factory.mktemp("audience-direct"), audience=True)
    try:
        run_traffic(site.server.port)
        expected = TRAFFIC["expect"]["total"]["polls"]
        yield site, figures_when(site, total_polls(expected))
    finally:
        site.server.stop()


def test_the_server_reports_what_the_readers_did(direct: tuple[Site, dict[str, Any]]) -> None:
    site, figures = direct
    check(figures, TRAFFIC["expect"])
    r = site.server.get("/audience.html")
    assert r.header("Cache-Control") == "no-store" and "default-src 'none'" in (
        r.header("Content-Security-Policy") or ""
    )
    assert b"<script" not in r.body and b"jndi" not in r.body  # refused readers are counted, never shown


def test_the_totals_are_gauges_on_metrics(direct: tuple[Site, dict[str, Any]]) -> None:
    site, figures = direct
    total = figures["total"]
    gauges: dict[str, str] = {}

    def current() -> bool:
        """Each worker keeps its report for a write interval: wait for the one of every poll."""
        text = site.server.get("/metrics").body.decode()
        gauges.clear()
        gauges.update(re.findall(r"^(feedsvc_audience_\w+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.MULTILINE))
        return float(gauges.get("feedsvc_audience_polls", -1)) == total["polls"]

    assert poll(current, timeout=SHOWN, interval=0.2), gauges
    for service, n in total["services"].items():
        assert float(gauges[f'feedsvc_audience_subscribers{{service="{service}"}}']) == n
    assert float(gauges['feedsvc_audience_subscribers{service="direct"}']) == total["direct"]
    assert float(gauges["feedsvc_audience_polls"]) == total["polls"]
    assert float(gauges["feedsvc_audience_fast_clients"]) == total["fast_clients"]
    assert float(gauges["feedsvc_audience_not_modified_ratio"]) == pytest.approx(total["not_modified"] / total["polls"])
    assert float(gauges['feedsvc_audience_skipped{reason="refused"}']) == TRAFFIC["expect"]["skipped"]["refused"]


def test_nginx_access_log_gives_the_same_figures(tmp_path: Path, direct: tuple[Site, dict[str, Any]]) -> None:
    """The traffic through deploy/nginx-proxy.conf; `feedsvc audience` over nginx's log agrees with the server."""
    _, served = direct
    upstream = serve(tmp_path / "upstream", audience=False, workers=1)
    try:
        proxy = start_proxy(tmp_path / "nginx", upstream.server.port)
        try:
            run_traffic(proxy.port)
        finally:
            proxy.stop()
        log = proxy.prefix.access_log
        assert log.stat().st_size > 0
        done = subprocess.run(
            [str(FEEDSVC), "--config", str(upstream.config), "audience", "--json", str(log)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        from_log = json_figures(json.loads(done.stdout))
    finally:
        upstream.server.stop()
    check(from_log, TRAFFIC["expect"])
    # Every figure but the conditional share is known alike from a log: all of this traffic's
    # conditional requests were answered 304, so that one agrees too.
    assert from_log["total"] == served["total"]
    assert from_log["feeds"] == served["feeds"]
    assert from_log["skipped"]["refused"] == served["skipped"]["refused"]


def test_off_by_default(tmp_path: Path) -> None:
    site = serve(tmp_path, audience=False, workers=1)
    try:
        play(site.server.port, TRAFFIC["phase1"])
        assert site.server.get("/audience.html").status == 404
        assert "feedsvc_audience" not in site.server.get("/metrics").body.decode()
    finally:
        site.server.stop()
    assert not store_path(site.out).exists()


def test_a_restart_keeps_the_report(tmp_path: Path) -> None:
    site = serve(tmp_path, audience=True)
    miniflux = {"agent": "Miniflux/2.1.0 (+https://miniflux.app)", "feed": "/feeds/all.atom", "polls": 3}
    try:
        play(site.server.port, [miniflux])
        before = figures_when(site, total_polls(3))
        assert before["total"]["direct"] == 1
    finally:
        site.server.stop()
    again = Server(site.config, free_port(), tmp_path, workers=2).start()
    site = Site(again, site.config, site.out)
    try:
        assert page_figures(again.get("/audience.html").body)["total"] == before["total"]
        newcomer = {
            "agent": "NetNewsWire (RSS Reader; https://netnewswire.com/)",
            "feed": "/feeds/all.atom",
            "polls": 1,
        }
        play(again.port, [miniflux, newcomer])
        after = figures_when(site, total_polls(7))
        assert after["total"]["direct"] == 2  # the same Miniflux as before the restart, and the newcomer
        # A stale validator is a conditional request answered in full: the server knows it was conditional.
        r = again.get("/feeds/all.atom", headers={"User-Agent": "Stale/1.0", "If-None-Match": '"not-current"'})
        assert r.status == 200
        stale = figures_when(site, total_polls(8))
        assert stale["total"]["conditional"] - stale["total"]["not_modified"] == 1
    finally:
        again.stop()


def test_a_broken_store_never_fails_a_request(tmp_path: Path) -> None:
    site = serve(tmp_path, audience=True)
    path = store_path(site.out)
    reader = {
        "agent": "Miniflux/2.1.0 (+https://miniflux.app)",
        "feed": "/feeds/all.atom",
        "polls": 20,
        "conditional": True,
    }
    try:
        play(site.server.port, [reader])
        figures_when(site, total_polls(20))
        # Garbage over the file while both workers write to it: set aside, started afresh.
        path.write_bytes(os.urandom(65536))
        play(site.server.port, [dict(reader, polls=7)])
        assert poll(path.with_name(path.name + ".damaged").exists, timeout=SHOWN)
        # Polls one worker wrote into the garbage before the other set it aside are
        # lost with it (at most these 7); from the fresh store on, every poll counts.
        settled = figures_when(site, lambda f: 0 < f["total"].get("polls", 0) <= 7)["total"]["polls"]
        assert 0 < settled <= 7
        time.sleep(4 * FLUSH)
        settled = figures_when(site, lambda f: True)["total"]["polls"]
        play(site.server.port, [dict(reader, polls=5)])
        assert figures_when(site, total_polls(settled + 5))["total"]["polls"] == settled + 5
        # A folder in its way: nothing can be written; the polls are counted as lost.
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            part.unlink(missing_ok=True)
        path.mkdir()
        play(site.server.port, [reader])
        time.sleep(4 * FLUSH)
        assert site.server.get("/audience.html").status == 200
        assert site.server.get("/metrics").status == 200
        path.rmdir()
        play(site.server.port, [reader])
        mended = figures_when(site, total_polls(20))
        assert mended["skipped"]["dropped"] == 20
    finally:
        site.server.stop()
    log = site.server.stderr()
    assert "Traceback" not in log
    statuses = re.findall(r'"GET [^"]+ HTTP/1.1" (\d{3}) ', log)
    assert statuses and set(statuses) <= {"200", "304"}, sorted(set(statuses))
    warnings = [line for line in log.splitlines() if "audience: cannot write" in line]
    # Once per worker and time the store broke: the folder, and (when one worker set
    # the garbage aside while the other opened it) the garbage.
    assert 1 <= len(warnings) <= 4, warnings
    shutil.rmtree(tmp_path / "public", ignore_errors=True)


def test_the_feeds_answer_as_fast_with_the_audience_on(direct: tuple[Site, dict[str, Any]]) -> None:
    """A coarse guard (the benchmark measures it): 200 polls take about as long as /healthz's."""
    site, _ = direct
    port = site.server.port
    started = time.perf_counter()
    for _ in range(200):
        assert request(port, "/feeds/all.atom", headers={"User-Agent": "Timer/1.0", "If-None-Match": "*"}).status == 304
    assert time.perf_counter() - started < 20
