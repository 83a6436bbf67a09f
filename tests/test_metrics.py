"""/metrics (`feedsvc.metrics`): Prometheus text that moves as requests and reloads happen.

Every scrape is parsed with prometheus-client's own parser, and every
expectation is a difference between two scrapes around requests made here,
with the bytes counted from what the test client received. Totals across
gunicorn workers are tested against a real server in test_features_e2e.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from feedsvc.config import Config, PoliteConfig
from feedsvc.metrics import kind_of
from feedsvc.reload import LiveSite
from feedsvc.web import create_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient) -> Samples:
    return scrape_sized(client)[0]


def scrape_sized(client: FlaskClient) -> tuple[Samples, int]:
    """The samples of one scrape, and the size of the scrape's body."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    samples: Samples = {}
    for family in text_string_to_metric_families(r.data.decode("utf-8")):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples, len(r.data)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    polite = PoliteConfig(exempt=(), max_requests=2)  # on for the test client's 127.0.0.1
    app = create_app(dataclasses.replace(config, polite=polite), background=False)
    yield app
    app.extensions["feedsvc"].stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/feeds/all.atom", "all"),
        ("/feeds/all.json", "all"),
        ("/feeds/topics/ai.rss", "topics"),
        ("/feeds/providers/jalopnik.com.atom", "providers"),
        ("/feeds/all.html", "pages"),
        ("/index.html", "pages"),
        ("/", "pages"),
        ("/feeds.opml", "other"),
        ("/healthz", "other"),
        ("/feeds/../etc/passwd", "other"),
    ],
)
def test_kind_of(path: str, kind: str) -> None:
    assert kind_of(path) == kind


def test_requests_are_counted_by_kind_and_status(client: FlaskClient) -> None:
    before, scraped = scrape_sized(client)
    sent = {"all": 0, "topics": 0, "pages": 0, "other": scraped}  # that scrape is counted in the next
    full = client.get("/feeds/all.atom")
    sent["all"] += len(full.data)
    zipped = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    sent["all"] += len(zipped.data)
    assert len(zipped.data) < len(full.data)
    topic = client.get("/feeds/topics/ai.rss")
    sent["topics"] += len(topic.data)
    assert client.get("/feeds/topics/ai.rss", headers={"If-None-Match": topic.headers["ETag"]}).status_code == 304
    assert client.get("/feeds/topics/ai.rss", headers={"If-None-Match": topic.headers["ETag"]}).status_code == 304
    for _ in range(2):  # max_requests=2 is 4 units: a fetch (2) and two 304s (1 each) spent them
        refused = client.get("/feeds/topics/ai.rss")
        assert refused.status_code == 429
        sent["topics"] += len(refused.data)  # a 429's body is sent too
    missing = client.get("/feeds/topics/no-such-topic.atom")
    assert missing.status_code == 404
    sent["topics"] += len(missing.data)
    bad = client.get("/feeds/all.atom?limit=zero")
    assert bad.status_code == 400
    sent["all"] += len(bad.data)
    head = client.head("/index.html")
    assert head.status_code == 200 and head.data == b""
    sent["other"] += len(client.get("/healthz").data)
    after = scrape(client)
    expected = {
        ("all", "200"): 2,
        ("all", "400"): 1,
        ("topics", "200"): 1,
        ("topics", "304"): 2,
        ("topics", "429"): 2,
        ("topics", "404"): 1,
        ("pages", "200"): 1,
        ("other", "200"): 2,  # /healthz and the first /metrics
        ("providers", "200"): 0,
    }
    for (kind, status), count in expected.items():
        assert delta(before, after, "feedsvc_http_requests_total", kind=kind, status=status) == count, (kind, status)
    assert delta(before, after, "feedsvc_http_not_modified_total", kind="topics") == 2
    assert delta(before, after, "feedsvc_http_rate_limited_total", kind="topics") == 2
    for kind in ("all", "topics", "pages", "other", "providers"):
        assert delta(before, after, "feedsvc_http_response_bytes_total", kind=kind) == sent.get(kind, 0), kind


def test_the_304_ratio_is_a_division_away(client: FlaskClient) -> None:
    before = scrape(client)
    etag = client.get("/feeds/providers/jalopnik.com.atom").headers["ETag"]
    assert client.get("/feeds/providers/jalopnik.com.atom", headers={"If-None-Match": etag}).status_code == 304
    after = scrape(client)
    total = sum(
        delta(before, after, "feedsvc_http_requests_total", kind="providers", status=s) for s in ("200", "304", "429", "404", "400")
    )
    assert delta(before, after, "feedsvc_http_not_modified_total", kind="providers") / total == 0.5


def test_reloads_are_counted_and_timed(app: Flask, client: FlaskClient, config: Config) -> None:
    live: LiveSite = app.extensions["feedsvc"]
    before = scrape(client)
    assert not live.reload_now().swapped
    record = next(Path(config.records_dir).glob("*.txt"))
    record.write_text(record.read_text(encoding="utf-8").replace("quality: 34", "quality: 35"), encoding="utf-8")
    assert live.reload_now().swapped
    after = scrape(client)
    assert delta(before, after, "feedsvc_reloads_total", outcome="unchanged") == 1
    assert delta(before, after, "feedsvc_reloads_total", outcome="changed") == 1
    assert delta(before, after, "feedsvc_reloads_total", outcome="failed") == 0
    assert delta(before, after, "feedsvc_reload_duration_seconds_count") == 2
    assert 0 < delta(before, after, "feedsvc_reload_duration_seconds_sum") < 30


def test_records_loaded_and_rejected(app: Flask, client: FlaskClient, config: Config) -> None:
    samples = scrape(client)
    assert value(samples, "feedsvc_records_loaded") == 2
    assert value(samples, "feedsvc_records_rejected") == 0
    (Path(config.records_dir) / "zz_bad.txt").write_text("---\ntitle: no link, no date\n---\n", encoding="utf-8")
    (Path(config.records_dir) / "zz_worse.txt").write_text("not a record\n", encoding="utf-8")
    assert app.extensions["feedsvc"].reload_now().swapped
    samples = scrape(client)
    assert value(samples, "feedsvc_records_loaded") == 2
    assert value(samples, "feedsvc_records_rejected") == 2


def test_custom_feeds_hits_and_misses(client: FlaskClient) -> None:
    before = scrape(client)
    client.get("/feeds/all.rss?limit=1")
    client.get("/feeds/all.rss?limit=01")
    after = scrape(client)
    assert delta(before, after, "feedsvc_custom_feeds_total", result="miss") == 1
    assert delta(before, after, "feedsvc_custom_feeds_total", result="hit") == 1


def test_metrics_is_not_limited_nor_cached(client: FlaskClient) -> None:
    for _ in range(10):
        r = client.get("/metrics")
        assert r.status_code == 200
        assert "ETag" not in r.headers


def test_apps_count_separately_in_one_process(config: Config) -> None:
    one = create_app(config, background=False).test_client()
    two = create_app(config, background=False).test_client()
    one.get("/feeds/all.atom")
    assert value(scrape(one), "feedsvc_http_requests_total", kind="all", status="200") == 1
    assert value(scrape(two), "feedsvc_http_requests_total", kind="all", status="200") == 0
