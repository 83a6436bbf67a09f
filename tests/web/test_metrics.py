"""/metrics (`feedsvc.web.metrics`): Prometheus text that moves as requests and builds happen.

Every scrape is parsed with prometheus-client's own parser, and every
expectation is a difference between two scrapes around requests made here,
with the bytes counted from what the test client received. Build counts come
from the builder process `feedsvc serve` forks, read from the multiprocess
files it writes, as a worker's /metrics reads them. Totals across gunicorn
workers are tested against a real server in test_features_e2e.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import rebuild, served_app
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from feedsvc.config import Config, PoliteConfig
from feedsvc.web import builder
from feedsvc.web.app import create_app
from feedsvc.web.metrics import ENV_VAR, request_kind

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient) -> Samples:
    return scrape_sized(client)[0]


def scrape_sized(client: FlaskClient) -> tuple[Samples, int]:
    """The samples of one scrape, and the size of the scrape's body."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    return samples_of(r.data), len(r.data)


def samples_of(text: bytes) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def scrape_files(folder: Path) -> Samples:
    """What /metrics reports from the multiprocess files in `folder` (those `feedsvc serve` shares)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return samples_of(generate_latest(registry))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def polite_config(config: Config) -> Config:
    polite = PoliteConfig(exempt=(), max_requests=2)  # on for the test client's 127.0.0.1
    return dataclasses.replace(config, polite=polite)


@pytest.fixture
def app(polite_config: Config) -> Flask:
    return served_app(polite_config)


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
def test_request_kind(path: str, kind: str) -> None:
    assert request_kind(path) == kind


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
        delta(before, after, "feedsvc_http_requests_total", kind="providers", status=s)
        for s in ("200", "304", "429", "404", "400")
    )
    assert delta(before, after, "feedsvc_http_not_modified_total", kind="providers") / total == 0.5


def _save(path: Path, text: str) -> None:
    """Save a record as an editor does: a new file renamed over the old, so no build sees half of it."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _retitle(record: Path, title: str) -> None:
    text = record.read_text(encoding="utf-8")
    _save(record, re.sub(r"^title: .*$", f'title: "{title}"', text, count=1, flags=re.MULTILINE))


def test_builds_are_counted_and_timed(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder process counts each build: changed (bytes changed), unchanged, or failed."""
    # Builds on file events only: no periodic scan adds to the counts while the test runs.
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, reload_interval=3600))
    folder = tmp_path / "metrics"
    folder.mkdir()
    out = Path(config.output_dir)
    # Only the builder process writes the files (the variable is gone again before this process counts anything).
    monkeypatch.setenv(ENV_VAR, str(folder))
    pid = builder.start_process(config, out, first=True)
    monkeypatch.delenv(ENV_VAR)

    def reloads(samples: Samples, outcome: str) -> float:
        return value(samples, "feedsvc_reloads_total", outcome=outcome)

    def until(done: Callable[[Samples], bool]) -> Samples:
        deadline = time.monotonic() + 30
        while True:
            try:
                samples = scrape_files(folder)
            except struct.error:  # prometheus-client read a file the builder has only just created
                samples = {}
            if done(samples):
                return samples
            assert time.monotonic() < deadline, samples
            time.sleep(0.05)

    record = sorted(Path(config.records_dir).glob("*.txt"))[0]
    try:
        until(lambda s: reloads(s, "changed") == 1)  # the first build writes everything
        # quality shows in no document: a build, and nothing served changes.
        text = record.read_text(encoding="utf-8")
        quality = re.search(r"^quality: (\d+)$", text, re.MULTILINE)
        assert quality
        _save(record, text.replace(quality.group(0), f"quality: {int(quality.group(1)) + 1}", 1))
        until(lambda s: reloads(s, "unchanged") == 1)
        _retitle(record, "A new headline")
        until(lambda s: reloads(s, "changed") == 2)
        # An output folder that cannot be written: the build fails, the builder carries on.
        os.rename(out, out.with_name("moved"))
        out.write_text("not a folder", encoding="utf-8")
        _retitle(record, "A newer headline")
        until(lambda s: reloads(s, "failed") == 1)
        out.unlink()
        os.rename(out.with_name("moved"), out)
        _save(Path(config.records_dir) / "zz_bad.txt", "not a record\n")
        after = until(lambda s: reloads(s, "changed") == 3)  # the failed build's change is made now
    finally:
        builder.stop_process(pid)
    assert (reloads(after, "changed"), reloads(after, "unchanged"), reloads(after, "failed")) == (3, 1, 1)
    assert value(after, "feedsvc_reload_duration_seconds_count") == 5
    assert 0 < value(after, "feedsvc_reload_duration_seconds_sum") < 60
    assert value(after, "feedsvc_records_loaded") == 2
    assert value(after, "feedsvc_records_rejected") == 1
    assert "A newer headline" in (out / "feeds" / "all.atom").read_text(encoding="utf-8")


def test_records_loaded_and_rejected(app: Flask, client: FlaskClient, polite_config: Config) -> None:
    samples = scrape(client)
    assert value(samples, "feedsvc_records_loaded") == 2
    assert value(samples, "feedsvc_records_rejected") == 0
    (Path(polite_config.records_dir) / "zz_bad.txt").write_text("---\ntitle: no link, no date\n---\n", encoding="utf-8")
    (Path(polite_config.records_dir) / "zz_worse.txt").write_text("not a record\n", encoding="utf-8")
    _retitle(sorted(Path(polite_config.records_dir).glob("0*.txt"))[0], "A new headline")
    assert rebuild(polite_config).changed_paths
    assert client.get("/feeds/all.atom").status_code == 200  # a request: the app notices the new build
    samples = scrape(client)
    assert value(samples, "feedsvc_records_loaded") == 2
    assert value(samples, "feedsvc_records_rejected") == 2
    records = Path(polite_config.records_dir)
    (records / "zz_worse.txt").unlink()
    another = sorted(records.glob("0*.txt"))[0].read_text(encoding="utf-8").replace("https://", "https://more.")
    (records / "zz_more.txt").write_text(another, encoding="utf-8")  # one more article
    assert rebuild(polite_config).changed_paths
    assert client.get("/healthz").status_code == 200
    samples = scrape(client)
    assert value(samples, "feedsvc_records_loaded") == 3
    assert value(samples, "feedsvc_records_rejected") == 1


def test_records_rejected_follows_a_build_that_changed_no_document(client: FlaskClient, polite_config: Config) -> None:
    assert value(scrape(client), "feedsvc_records_rejected") == 0
    (Path(polite_config.records_dir) / "zz_worse.txt").write_text("not a record\n", encoding="utf-8")
    report = rebuild(polite_config)
    assert report.rejected == 1 and not report.changed_paths
    assert client.get("/healthz").status_code == 200  # a request that looks for a new build
    assert value(scrape(client), "feedsvc_records_rejected") == 1


def test_a_scrape_right_after_a_build_reports_its_records(client: FlaskClient, polite_config: Config) -> None:
    assert value(scrape(client), "feedsvc_records_rejected") == 0
    (Path(polite_config.records_dir) / "zz_worse.txt").write_text("not a record\n", encoding="utf-8")
    _retitle(sorted(Path(polite_config.records_dir).glob("0*.txt"))[0], "A new headline")
    assert rebuild(polite_config).changed_paths
    assert value(scrape(client), "feedsvc_records_rejected") == 1


def test_custom_feeds_hits_and_misses(client: FlaskClient, polite_config: Config) -> None:
    before = scrape(client)
    client.get("/feeds/all.rss?limit=1")
    client.get("/feeds/all.rss?limit=01")
    after = scrape(client)
    assert delta(after, scrape(client), "feedsvc_custom_feeds_total", result="miss") == 0
    assert delta(before, after, "feedsvc_custom_feeds_total", result="miss") == 1
    assert delta(before, after, "feedsvc_custom_feeds_total", result="hit") == 1
    # A new build: what was cached was made from the old records.
    _retitle(sorted(Path(polite_config.records_dir).glob("*.txt"))[0], "A new headline")
    assert rebuild(polite_config).changed_paths
    # (From another address: polite polling allowed this one two fetches of the URL.)
    other = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/feeds/all.rss?limit=1", environ_base=other).status_code == 200
    assert client.get("/feeds/all.rss?limit=1", environ_base=other).status_code == 200
    last = scrape(client)
    assert delta(after, last, "feedsvc_custom_feeds_total", result="miss") == 1
    assert delta(after, last, "feedsvc_custom_feeds_total", result="hit") == 1


def test_metrics_is_not_limited_nor_cached(client: FlaskClient) -> None:
    for _ in range(10):
        r = client.get("/metrics")
        assert r.status_code == 200
        assert "ETag" not in r.headers


def test_apps_count_separately_in_one_process(config: Config) -> None:
    one = served_app(config).test_client()
    two = create_app(config).test_client()
    one.get("/feeds/all.atom")
    assert value(scrape(one), "feedsvc_http_requests_total", kind="all", status="200") == 1
    assert value(scrape(two), "feedsvc_http_requests_total", kind="all", status="200") == 0
